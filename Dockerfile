# platform-bot: `platform-bot serve` on port 3000 (HTTP mode), or Socket Mode when
# SLACK_APP_TOKEN is set. Configure it with environment variables (see README) and
# mount the platform model at /config/platform.yml (its `templates_dir` may name the
# shipped templates, /usr/share/platform-bot/templates).
#
#   docker build -t platform-bot .
#   docker run -p 3000:3000 -v "$PWD/platform.yml:/config/platform.yml:ro" \
#     -e SLACK_BOT_TOKEN -e SLACK_SIGNING_SECRET -e DATABASE_URL platform-bot
#
# On PostgreSQL, run `platform-bot db upgrade` (same image, same DATABASE_URL) before
# rolling out a new version; the default SQLite file in /data upgrades itself.

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/platform-bot
WORKDIR /src
# Every dependency (and the build backend) at the version and hash requirements.lock
# pins, so two builds of one commit install the same bytes; a package whose hash does
# not match stops the build. Regenerate the lock with the command at its top.
COPY requirements.lock .
RUN /opt/platform-bot/bin/pip install --require-hashes --no-deps -r requirements.lock
# .dockerignore keeps the context to pyproject.toml, README.md, the lock and the packages.
COPY . .
# The package only: no dev extras, not editable, nothing resolved beyond the lock.
RUN /opt/platform-bot/bin/pip install --no-deps --no-build-isolation .

FROM python:3.11-slim
ENV PATH=/opt/platform-bot/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PORT=3000 \
    DATABASE_URL=sqlite:////data/platform-bot.db \
    PLATFORM_CONFIG=/config/platform.yml
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin platform-bot \
    && mkdir -p /data /config \
    && chown platform-bot:platform-bot /data
COPY --from=build /opt/platform-bot /opt/platform-bot
# The shipped golden-path templates; point `templates_dir` in platform.yml here, or at
# your own directory mounted into the container.
COPY --from=build /src/templates /usr/share/platform-bot/templates
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 3000
# slim has no curl; the image's Python asks /healthz on the port the bot listens on.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT', '3000')}/healthz\", timeout=4)"]
CMD ["platform-bot", "serve"]
