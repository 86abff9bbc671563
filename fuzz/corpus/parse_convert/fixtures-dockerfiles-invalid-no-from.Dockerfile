# just a comment
RUN echo hi
