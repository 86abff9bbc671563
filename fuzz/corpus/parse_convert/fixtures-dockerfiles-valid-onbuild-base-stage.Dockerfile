# ONBUILD in a stage runs in the stages built FROM it, once.
FROM busybox AS assets
RUN echo asset > /asset
FROM busybox AS base
ONBUILD COPY --from=assets /asset /asset
ONBUILD RUN cat /asset
FROM base
RUN echo child
