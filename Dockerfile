# Callboard and the demo apps, as compose.yaml runs them (every Python service uses this image).

# Stage 1: the front-end libraries from the npm registry (package-lock.json), copied into static/vendor.
FROM node:20-slim AS assets
WORKDIR /src
COPY package.json package-lock.json ./
COPY scripts/copy-vendor.mjs scripts/
RUN npm ci --no-audit --no-fund && npm run build

# Stage 2: Callboard and the demo apps, from the hashed lockfile.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY requirements/dev.txt requirements/dev.txt
RUN pip install --no-cache-dir --require-hashes -r requirements/dev.txt
COPY . .
COPY --from=assets /src/static/vendor static/vendor
RUN pip install --no-cache-dir --no-deps .
USER nobody
EXPOSE 8000
# 0.0.0.0 is needed inside a container; publish the port on 127.0.0.1 (as compose.yaml does) or put
# authentication in front, since binding beyond loopback without auth must be explicit.
CMD ["callboard", "serve", "--host", "0.0.0.0", "--allow-unauthenticated", "--redis", "compose=redis://redis:6379/0"]
