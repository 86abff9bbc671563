FROM alpine
RUN --mount=type=cache,target=/root/.cache pip install .
