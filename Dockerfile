# One image for the API, the worker and the SMTP receiver (docker-compose.yml picks the command).
FROM node:20-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev
COPY tsconfig.json ./
COPY src ./src
ENV NODE_ENV=production
USER node
# Node itself gets SIGTERM (npx would not pass it on) and stops gracefully.
CMD ["node", "--import", "tsx", "src/api/server.ts"]
