FROM debian:bookworm-slim
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
USER nobody
WORKDIR /srv
WORKDIR data
VOLUME ["/srv/data"]
STOPSIGNAL SIGINT
HEALTHCHECK --interval=30s --timeout=3s --retries=3 CMD curl -f http://localhost/ || exit 1
ONBUILD COPY . /srv/app
ENTRYPOINT exec /srv/run
