# SHELL changes how shell-form RUN, CMD and ENTRYPOINT are stored.
FROM busybox
SHELL ["/bin/sh", "-e", "-c"]
RUN echo one; echo two
ENTRYPOINT exec /app/run
CMD ["--help"]
