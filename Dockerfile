# Pipeline image for Kubeflow Pipelines / Vertex AI: TFX's own 1.16.0 image (its entrypoint runs components)
# plus sluice installed under the same constraints as a local checkout, so module paths such as
# sluice.components.transform.preprocessing_fn resolve inside every component container.
FROM tensorflow/tfx:1.16.0

# The package is built from /src and the source removed: every step runs `python -m …` in WORKDIR, which
# puts the working directory first on sys.path, and a source folder there (sluice/) would shadow the
# installed package (its subpackages live in pipeline/, components/, serving/ and are mapped at install).
COPY pyproject.toml constraints.txt README.md /src/
COPY sluice/ /src/sluice/
COPY pipeline/ /src/pipeline/
COPY components/ /src/components/
COPY serving/ /src/serving/
# The base image already carries tfx 1.16.0 and its stack; the constraints keep pip from moving any of it.
RUN python -m pip install --no-cache-dir -c /src/constraints.txt "/src[serving]" && rm -rf /src

# What `sluice compile` maps into the image (a project's configs/, schemas/ and the bundled data/), so the
# shipped configs compile and run unchanged; real pipelines read their data from a URI (--data gs://...).
WORKDIR /sluice
COPY schemas/ schemas/
COPY configs/ configs/
COPY data/ data/
# The check runs where the components run (WORKDIR): the installed package, its artifact types included.
RUN python -c "import sluice, sluice.components.transform, sluice.components.trainer.run_fn, \
sluice.components.infra_check; sluice.DataVerdict, sluice.ExportedModel"
