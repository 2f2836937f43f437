# Sparsity Lab: the app and a worker in one container, SQLite under /data.
# torch==2.13.0 is pinned exactly; on a machine without a local CPU wheel, add
# --extra-index-url https://download.pytorch.org/whl/cpu to get the CPU build.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    SPARSITY_HOME=/data HF_HUB_OFFLINE=1
WORKDIR /app

# gcc builds the lab's CSR kernel (csr_tiled) for the CPU it runs on, at first use
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*

COPY requirements.txt requirements-bundled.txt ./
RUN pip install --no-cache-dir -r requirements.txt \
 && pip install --no-cache-dir --no-deps -r requirements-bundled.txt

COPY . .
VOLUME /data
EXPOSE 8501
# serve binds 127.0.0.1 by default; inside the container it must bind 0.0.0.0 for a published port,
# and then it refuses to start without an access control:
#   docker run -e SPARSITY_TOKEN=$(python -c 'import secrets; print(secrets.token_urlsafe(24))') -p 8501:8501 ...
CMD ["python", "-m", "sparsity_core", "serve", "--port", "8501", "--host", "0.0.0.0"]
