ARG BASE=busybox
ARG TAG
FROM ${BASE}:${TAG:-1.36}
ARG TAG
ARG USER=app
ENV abc=hello
ENV abc=bye def=$abc
ENV USER=envuser
RUN echo "$abc $def $TAG $USER"
LABEL org.opencontainers.image.title="demo ${TAG}" version=$TAG
EXPOSE 80 443/udp
CMD echo done
