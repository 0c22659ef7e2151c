FROM python:3.11-slim
WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
# bilan/data holds what the service reads at run time: the build needs the project alone.
COPY bilan ./bilan
RUN pip install --no-cache-dir --no-deps .
RUN useradd --system bilan
USER bilan
EXPOSE 8000
CMD ["bilan", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
