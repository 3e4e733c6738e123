# Pipeline image for Kubeflow Pipelines / Vertex AI: TFX's own 1.16.0 image (its entrypoint runs components)
# plus sluice installed under the same constraints as a local checkout, so module paths such as
# sluice.components.transform.preprocessing_fn resolve inside every component container.
FROM tensorflow/tfx:1.16.0

WORKDIR /sluice
COPY pyproject.toml constraints.txt README.md ./
COPY sluice/ sluice/
COPY pipeline/ pipeline/
COPY components/ components/
COPY serving/ serving/
COPY schemas/ schemas/
COPY configs/ configs/
# The bundled data, so the shipped configs compile and run unchanged (`sluice compile` maps checkout paths
# to /sluice/...); real pipelines read their data from a URI (`sluice compile --data gs://...`).
COPY data/ data/

# The base image already carries tfx 1.16.0 and its stack; the constraints keep pip from moving any of it.
RUN python -m pip install --no-cache-dir -c constraints.txt ".[serving]" \
 && python -c "import sluice.components.transform, sluice.components.trainer.run_fn, sluice.components.infra_check"
