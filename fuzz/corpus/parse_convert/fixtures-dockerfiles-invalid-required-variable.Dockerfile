ARG VERSION
FROM alpine
ARG VERSION
ENV APP_VERSION="${VERSION:?set it with --build-arg VERSION=...}"
