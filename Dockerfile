# One image for the web server, the workers and the migrate job (compose.yml picks the command).
FROM python:3.11-slim-bookworm

# A fixed mmap threshold: glibc then hands a decoded image's memory back to the system when it is
# freed, instead of keeping it in each thread's heap (docs/deployment.md, "Memory").
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    WEB_CONCURRENCY=2 \
    GLIBC_TUNABLES=glibc.malloc.mmap_threshold=131072

RUN useradd --create-home --uid 1000 app \
    && mkdir -p /data /media && chown app:app /data /media
WORKDIR /app

COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY --chown=app:app . .
# collectstatic needs settings that import; the key here is thrown away with this layer.
RUN DJANGO_DEBUG=false DJANGO_SECRET_KEY=build-only DJANGO_ALLOWED_HOSTS=localhost \
    python manage.py collectstatic --noinput

USER app
EXPOSE 8000
# The production command (README, "Deployment"); exec makes the server PID 1, so it gets SIGTERM.
CMD ["sh", "-c", "exec uvicorn taskqueue_site.asgi:application --host 0.0.0.0 --port 8000 --workers \"$WEB_CONCURRENCY\" --proxy-headers --no-server-header --timeout-graceful-shutdown 30 --limit-concurrency 800 --timeout-keep-alive 5 --backlog 2048 --log-config taskqueue_site/uvicorn_logging.json"]
