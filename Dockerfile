FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DJANGO_ENV=production
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends libpq5 && rm -rf /var/lib/apt/lists/*
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
# collectstatic reads the settings, which require both servers' URLs; it connects to neither.
RUN SECRET_KEY=build SALT_KEY=build ALLOWED_HOSTS=build DATABASE_URL=postgres://build@127.0.0.1:1/build \
    REDIS_URL=redis://127.0.0.1:1/0 python manage.py collectstatic --noinput
EXPOSE 8000
CMD ["gunicorn", "config.asgi:application", "-k", "core.workers.BoundedUvicornWorker", "-w", "2", "-b", "0.0.0.0:8000"]
