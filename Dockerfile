# The one application image: worker, dispatcher, beat, api and flower differ only by command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY mcmp ./mcmp
RUN pip install '.[ops]' \
    && useradd --system --uid 10001 --home-dir /var/lib/mcmp --create-home mcmp

USER mcmp
ENV MCMP_STATE_DIR=/var/lib/mcmp
ENTRYPOINT ["mcmp"]
CMD ["--help"]
