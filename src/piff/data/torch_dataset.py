"""A piff dataset as a ``torch.utils.data.Dataset`` of (DEM, rainfall window, prior, target hour).

One sample is one map: a DEM, a storm of the requested split and a target hour ``h >= 1``.
All values are in physical units (metres, mm/h, m^2); the model's ``Normaliser`` maps them
to model space. Keys of a sample (tensors, float32 unless said):

==============  ==============  =====================================================
key             shape           meaning
==============  ==============  =====================================================
depth           (1, H, W)       depth at hour h (m), the target
depth_prev      (1, H, W)       depth at hour h-1 (m)
elevation       (1, H, W)       bed elevation (m)
prior           (1, H, W)       the prior (m): SPM map of the window's cumulative rain,
                                or the coarse dynamic prior at hour h (``prior="coarse"``)
rain_window     (24,)           intensities (mm/h) of the 24 hours ending at hour h,
                                left-padded with zeros before the event
rain_mm_per_h   ()              intensity of the hour ending at h (mm/h)
flux_x          (1, H, W+1)     hour-integrated x-face discharge over (h-1, h] (m^2)
flux_y          (1, H+1, W)     hour-integrated y-face discharge over (h-1, h] (m^2)
loss            (1, H, W)       losses over (h-1, h] (m); zeros if the dataset has none
dx              ()              cell size (m)
hour, dem, storm  () int64      target hour, DEM index, storm id
==============  ==============  =====================================================
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import torch

from piff.choices import PRIORS
from piff.data import format as fmt
from piff.data.symmetry import IDENTITY, boundary_symmetries, transform_sample
from piff.errors import PiffInputError
from piff.hydro.spm import spm_lookup
from piff.hydro.storms import rain_window


class FloodMapDataset(torch.utils.data.Dataset):
    """Maps of one split of a piff dataset.

    ``in_memory=True`` loads the split's fields once (fast; fine for demo-sized data);
    ``in_memory=False`` reads each sample's 2-D fields from the netCDF file on demand (the file
    is chunked one 2-D field per chunk), one file handle per worker process.
    """

    def __init__(self, path, split: str = "train", *, hours=None, prior: str = "spm",
                 with_physics: bool = True, in_memory: bool = True):
        self.path = Path(path)
        ds = fmt.open_dataset(self.path)
        if prior not in PRIORS:
            raise ValueError(f"prior must be one of {PRIORS}, got {prior!r}")
        if prior == "coarse" and "prior_coarse" not in ds:
            raise PiffInputError(self.path, "prior='coarse' needs the prior_coarse variable "
                                            "(enable coarse_prior in the dataset config)")
        if with_physics and not {"flux_x", "flux_y"} <= set(ds.variables):
            raise PiffInputError(self.path, "the physics loss needs flux_x and flux_y, which this dataset lacks")
        self.split, self.prior, self.with_physics, self.in_memory = split, prior, with_physics, in_memory
        self.dx = float(ds.attrs["cell_size_m"])
        n_time = ds.sizes["time"]
        self.hours = list(range(1, n_time)) if hours is None else [int(h) for h in hours]
        if any(h < 1 or h >= n_time for h in self.hours):
            raise PiffInputError(self.path, f"requested hours {self.hours} must lie in 1..{n_time - 1}, the "
                                            f"dataset's storm hours (check eval_hours)")
        storm_ids = fmt.storm_ids_in_split(ds, split)
        all_ids = ds["storm"].values
        self.storm_rows = np.nonzero(np.isin(all_ids, storm_ids))[0]
        self.storm_ids = all_ids[self.storm_rows]
        self.n_dem = ds.sizes["dem"]
        self.dems = fmt.dems_in_split(ds, split)  # held-out terrain only in the test split
        self.rainfall = ds["rainfall"].values.astype(np.float32)
        self.elevation = ds["elevation"].values.astype(np.float32)
        self.spm_table = ds["spm"].values.astype(np.float32) if prior == "spm" else None
        self.spm_bins = ds["rain_bin"].values if "rain_bin" in ds.coords else None
        self.has_loss = "loss" in ds
        self.shape = ds["elevation"].shape[1:]
        self.storm_group = ds["storm_group"].values.astype(str)
        self._boundary = ds["boundary"].values.astype(str) if "boundary" in ds else None
        # sample index -> (dem, storm row, hour), dem-major so neighbouring samples share a DEM
        self.index = np.array([(d, r, h) for d in self.dems for r in self.storm_rows for h in self.hours],
                              dtype=np.int64).reshape(-1, 3)
        self._fields = None
        if in_memory:
            names = ["depth"] + (["flux_x", "flux_y"] + (["loss"] if self.has_loss else []) if with_physics else [])
            names += ["prior_coarse"] if prior == "coarse" else []
            self._fields = {n: ds[n].isel(storm=self.storm_rows).values.astype(np.float32) for n in names}
            self._row_of = {int(r): i for i, r in enumerate(self.storm_rows)}
        ds.close()
        self._nc, self._nc_pid = None, None

    def normaliser_arrays(self, max_maps: int = 2000):
        """(depth maps, elevations) of this split in metres, to fit the model's Normaliser.
        At most ``max_maps`` depth maps, evenly spread over the split (hours 1..T)."""
        take = self.index[:: max(1, len(self.index) // max_maps)]
        depth = np.stack([self._field("depth", int(d), int(r), int(h)) for d, r, h in take])
        return depth, self.elevation[self.dems]

    def __len__(self) -> int:
        return len(self.index)

    def _field(self, name, dem, row, hour):
        if self._fields is not None:
            return self._fields[name][dem, self._row_of[row], hour]
        if self._nc is None or self._nc_pid != os.getpid():  # a fresh handle in each worker
            import netCDF4

            self._nc, self._nc_pid = netCDF4.Dataset(self.path), os.getpid()
            self._nc.set_auto_mask(False)
        return np.asarray(self._nc[name][dem, row, hour], np.float32)

    @functools.cached_property
    def symmetries(self) -> list:
        """Per DEM, the grid symmetries that keep its boundary conditions (``augment: symmetry``);
        only the identity where the dataset has no ``boundary`` variable (PIFF PNG imports)."""
        if self._boundary is None:
            return [(IDENTITY,)] * self.n_dem
        try:
            return [boundary_symmetries(b, self.shape) for b in self._boundary]
        except PiffInputError as err:
            raise PiffInputError(self.path, f"variable boundary: {err.problem}") from None

    def transformed(self, i: int, draw: float) -> dict:
        """Sample ``i`` under one of its DEM's grid symmetries (piff.data.symmetry), chosen by
        ``draw`` in [0, 1): each allowed element equally likely, the identity for draw < 1/n."""
        sample = self[i]
        allowed = self.symmetries[int(sample["dem"])]
        return transform_sample(sample, allowed[min(int(draw * len(allowed)), len(allowed) - 1)])

    def __getitem__(self, i: int) -> dict:
        dem, row, hour = (int(v) for v in self.index[i])
        window = rain_window(self.rainfall[row], hour)
        if self.prior == "spm":
            prior = spm_lookup(self.spm_table[dem], float(window.sum()), self.spm_bins)
        else:
            prior = self._field("prior_coarse", dem, row, hour)
        sample = {
            "depth": _t(self._field("depth", dem, row, hour))[None],
            "depth_prev": _t(self._field("depth", dem, row, hour - 1))[None],
            "elevation": _t(self.elevation[dem])[None],
            "prior": _t(prior)[None],
            "rain_window": _t(window),
            "rain_mm_per_h": torch.tensor(float(self.rainfall[row, hour])),
            "dx": torch.tensor(self.dx),
            "hour": torch.tensor(hour),
            "dem": torch.tensor(dem),
            "storm": torch.tensor(int(self.storm_ids[np.searchsorted(self.storm_rows, row)])),
        }
        if self.with_physics:
            sample["flux_x"] = _t(self._field("flux_x", dem, row, hour))[None]
            sample["flux_y"] = _t(self._field("flux_y", dem, row, hour))[None]
            sample["loss"] = (_t(self._field("loss", dem, row, hour))[None] if self.has_loss
                              else torch.zeros((1, *self.shape)))
        return sample


def _t(a) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
