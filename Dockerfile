# syntax=docker/dockerfile:1

# Build static binaries: the server, and the demo apps that
# docker-compose.yml's "demo" profile runs from the same image. The Go
# version matches go.mod's go directive.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/authz ./cmd/demo-bff ./cmd/demo-api \
    && mkdir /out/demo

# Run it on distroless: CA certificates and tzdata, no shell, not root.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/authz /out/demo-bff /out/demo-api /
# Where "authz dev --seed-only" leaves the demo credentials for the demo
# apps (docker-compose.yml's demo profile). Owned by nonroot, so that a new
# volume mounted here is too.
COPY --from=build --chown=65532:65532 /out/demo /demo
USER nonroot:nonroot
ENV AUTHZ_LISTEN=:8080
EXPOSE 8080
ENTRYPOINT ["/authz"]
# Applies pending migrations (under tern's advisory lock, so replicas
# starting together are safe), then serves. Override with e.g.
# "docker run IMAGE clients list"; run a demo app with
# "docker run --entrypoint /demo-bff IMAGE" (see docker-compose.yml).
CMD ["serve", "--migrate"]
