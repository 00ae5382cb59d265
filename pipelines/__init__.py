"""Prefect orchestration of the seqcast pipeline: stage flows, the pipeline flow, its schedule."""
