"""Workloads for the twin and live benchmarks: synthetic generators and trace replay."""

from rastos.workload.model import WorkloadRequest, output_tokens

__all__ = ["WorkloadRequest", "output_tokens"]
