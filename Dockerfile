# One image for both parts: `dbproxy operator ...` and `dbproxy proxy --config FILE` (the chart
# and the operator's proxy Deployment pass those as args; the entrypoint is the CLI).
#
#   docker build -t dbproxy:dev .
#
# Not built on this project's own build machine (no Docker there); hack/kind/e2e.sh and CI build it.

# --- build: TypeScript -> dist/ (the `node` devDependency brings Node 24 for npm scripts)
FROM node:24-bookworm AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY proxy ./proxy
COPY operator ./operator
COPY test ./test
COPY hack ./hack
RUN npm run build

# --- production dependencies only. None of them has an install script (libpg-query is
# WebAssembly, nothing is compiled natively), so none is run.
FROM node:24-bookworm AS deps
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

# --- runtime: distroless Node 24, no shell, no package manager; uid/gid 65532 as the chart and
# the operator's pod security context expect. Nothing is written to the filesystem at runtime, so
# readOnlyRootFilesystem works (the operator mounts an emptyDir at /tmp for the proxy anyway).
FROM gcr.io/distroless/nodejs24-debian12:nonroot
WORKDIR /app
# package.json marks dist/ as ES modules ("type": "module").
COPY --from=build /src/package.json ./package.json
COPY --from=deps /src/node_modules ./node_modules
COPY --from=build /src/dist/proxy ./dist/proxy
COPY --from=build /src/dist/operator ./dist/operator
ENV NODE_ENV=production
USER 65532:65532
# package.json's bin: dbproxy -> dist/proxy/cli/dbproxy.js. Proxy port 5432, admin/metrics 9090,
# operator metrics 8080.
EXPOSE 5432 9090 8080
ENTRYPOINT ["/nodejs/bin/node", "/app/dist/proxy/cli/dbproxy.js"]
CMD ["help"]
