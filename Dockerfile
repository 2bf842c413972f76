# syntax=docker/dockerfile:1

# Build a static binary. The Go version matches go.mod's go directive.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /authz ./cmd/authz

# Run it on distroless: CA certificates and tzdata, no shell, not root.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /authz /authz
USER nonroot:nonroot
ENV AUTHZ_LISTEN=:8080
EXPOSE 8080
ENTRYPOINT ["/authz"]
# Applies pending migrations (under tern's advisory lock, so replicas
# starting together are safe), then serves. Override with e.g.
# "docker run IMAGE clients list".
CMD ["serve", "--migrate"]
