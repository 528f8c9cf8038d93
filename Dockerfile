# One image for the API, the worker and the SMTP receiver (docker-compose.yml picks the command): compiled
# JavaScript run by plain node on the Node LTS (package.json "engines"), the workflow bundle built with the image.

# Build: every dependency, then `npm run build` (dist/: the compiled sources and the prebuilt workflow bundle).
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/build.ts scripts/node-lts.sh ./scripts/
COPY src ./src
RUN npm run build

# Run: production dependencies only (no TypeScript, no tsx) and the build's output, as the unprivileged user node.
FROM node:24-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
USER node
EXPOSE 3000
# Liveness of the API (GET /health), asked with node's own fetch: the slim image has no curl. Readiness (GET /ready)
# is for load balancers; restarting the API would not bring back PostgreSQL or Temporal.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch(`http://127.0.0.1:${process.env.PORT || 3000}/health`).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Node itself is PID 1's command and gets SIGTERM (npm or a shell would not pass it on), and stops gracefully.
CMD ["node", "dist/src/api/server.js"]
