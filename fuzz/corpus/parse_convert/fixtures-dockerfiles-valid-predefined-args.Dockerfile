# Platform ARGs and TARGETSTAGE are global: usable in FROM, redeclared to use in a stage.
FROM --platform=$BUILDPLATFORM busybox:1.36 AS build
ARG TARGETOS TARGETARCH TARGETSTAGE
RUN echo "building for $TARGETOS/$TARGETARCH, target $TARGETSTAGE"
FROM busybox:1.36 AS final
COPY --from=build /bin/busybox /bin/busybox
RUN echo "not redeclared in this stage: $TARGETARCH"
