# Multi-stage build: a static binary on distroless, running as non-root.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
# grpcnotrace: see GOTAGS in the Makefile.
RUN CGO_ENABLED=0 go build -trimpath -tags grpcnotrace \
    -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
    -o /out/kube-otel-bridge ./cmd/kube-otel-bridge

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/kube-otel-bridge /kube-otel-bridge
USER 65532:65532
ENTRYPOINT ["/kube-otel-bridge"]
CMD ["run"]
