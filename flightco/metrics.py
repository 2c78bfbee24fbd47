"""Torch-free metrics of a Genome: size, MACs and every hardware profile's costs.

This runs in microseconds, before any training, so constraint violators are rejected for
free and the same numbers become objectives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from flightco.hw.profile import HardwareProfile
from flightco.hw.workload import total_macs, weight_bytes, workload
from flightco.space import Genome


def genome_metrics(genome: Genome, profiles: Sequence[HardwareProfile],
                   realised_terms: Mapping[str, float] | None = None) -> dict[str, float]:
    """``macs``, ``params``, ``weight_kb`` plus ``<profile>.<metric>`` for every profile.

    The first profile's costs are also given unprefixed (``energy_mj``), as the recipe's
    primary target. FLightNN layers cost their ``k_max`` terms unless ``realised_terms``
    (kernel -> mean terms per weight, known after training) is given.
    """
    layers = workload(genome, realised_terms)
    out: dict[str, float] = {
        "macs": float(total_macs(layers)),
        "params": float(sum(layer.params for layer in layers)),
        "weight_kb": weight_bytes(layers) / 1024,
    }
    for i, profile in enumerate(profiles):
        costs = profile.cost(layers).as_dict()
        for key, value in costs.items():
            out[f"{profile.name}.{key}"] = value
            if i == 0:
                out[key] = value
    return out
