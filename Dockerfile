# syntax=docker/dockerfile:1

# The pcm image: one static binary on a small Alpine base. Alpine rather than
# scratch or distroless because jobs with shell: true run through /bin/sh.
#
#   docker build --build-arg VERSION=v1.2.3 -t pcm:v1.2.3 .
#   docker run --rm pcm:v1.2.3 version

ARG GO_VERSION=1.26
ARG ALPINE_VERSION=3.22

# Build stage: a static binary (no cgo), reproducible paths, no symbol table.
FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first, in their own layer: it is rebuilt only when go.mod or go.sum
# change, not on every source edit.
COPY go.mod go.sum ./
RUN go mod download && go mod verify
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
        -o /out/pcm ./cmd/pcm

# Final stage: the binary, /bin/sh for shell jobs, and an unprivileged user
# whose home is the agent's state directory (mount a volume there).
FROM alpine:${ALPINE_VERSION} AS final
RUN addgroup -S -g 10001 pcm \
    && adduser -S -D -u 10001 -G pcm -h /var/lib/pcm -s /sbin/nologin pcm \
    && mkdir -p /var/lib/pcm \
    && chown pcm:pcm /var/lib/pcm
COPY --from=build /out/pcm /usr/local/bin/pcm
USER pcm:pcm
WORKDIR /var/lib/pcm
ENTRYPOINT ["/usr/local/bin/pcm"]
CMD ["--help"]
