# syntax=docker/dockerfile:1
ARG GO_VERSION=1.22
FROM golang:${GO_VERSION} AS Build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN --network=none go build -o /out/app ./cmd/app

FROM build AS test
RUN go test ./...

FROM scratch
COPY --from=build /out/app /app
ENTRYPOINT ["/app"]
