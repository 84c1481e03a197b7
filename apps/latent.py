"""A learned latent space: an autoencoder on pairwise bead distances.

:class:`DistanceAutoencoder` is a small torch MLP autoencoder on (n, P) distances (or
contact values) between B beads, P = B(B-1)/2 in ``numpy.triu_indices(B, 1)`` order.
:class:`LatentFeatures` makes it a *refittable* row featurizer for a campaign promotion
(``Promotion(features=LatentFeatures(n_beads))``): the engine calls ``refit`` on every
committed source row before each learner fit, so the learner always works in the newest
latent space (see ``campaign.spec.Promotion`` and docs/engine.md). :class:`LatentAnalysis`
is the MDAnalysis-style analysis: ``LatentAnalysis(u.select_atoms("name CA")).run()``
fills ``results.latent`` (n_frames, latent_dim) for any Universe.

Training is full batch Adam on one CPU thread with a seeded initialization and split,
so two fits on the same rows with the same seed give bit-for-bit equal weights.
Encoding is evaluated in float64 numpy in a fixed order, so a row's features are
bit-for-bit the same whatever batch it is evaluated in (rounds mode replays exactly).
Distances are in Å.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from MDAnalysis.analysis.base import AnalysisBase
from MDAnalysis.core.groups import AtomGroup
from MDAnalysis.lib.distances import self_distance_array

__all__ = ["DistanceAutoencoder", "LatentAnalysis", "LatentFeatures", "bead_distances",
           "contact_values"]

DISTANCE_KINDS = ("pairwise", "contacts")


def bead_distances(positions: np.ndarray) -> np.ndarray:
    """Pairwise distances of bead positions.

    Args:
        positions: (n, B, 3) Å.

    Returns:
        (n, B(B-1)/2) distances in ``numpy.triu_indices(B, 1)`` order.
    """
    positions = np.asarray(positions, dtype=np.float64)
    first, second = np.triu_indices(positions.shape[1], 1)
    return np.linalg.norm(positions[:, first] - positions[:, second], axis=-1)


def contact_values(distances: np.ndarray, cutoff: float) -> np.ndarray:
    """Smooth contact map entries ``(1 - d^6) / (1 - d^12) = 1 / (1 + d^6)``, d = r / cutoff.

    The rational switching function of PLUMED's ``COORDINATION`` with n=6, m=12: 1 at
    contact, 0.5 at the cutoff, towards 0 beyond; smooth where a DeepDriveMD-style hard
    contact map (r < cutoff) jumps.
    """
    return 1.0 / (1.0 + (np.asarray(distances, dtype=np.float64) / cutoff) ** 6)


class DistanceAutoencoder:
    """An MLP autoencoder on (n, P) distances with a ``latent_dim`` bottleneck.

    Inputs are standardized with the mean and standard deviation of the rows of the
    latest fit (before any fit: mean 0, sd 1, and the encoder is the seeded, untrained
    network, a fixed random projection). Weights are kept as numpy arrays, so the object
    pickles and copies cheaply.

    Args:
        n_inputs: P, distances per row.
        latent_dim: width of the latent space.
        hidden: widths of the encoder's hidden layers (the decoder mirrors them).
        seed: seeds the initialization, the held-out split and the row subsample.
        epochs: full-batch epochs of a first fit.
        refit_epochs: epochs of a warm refit (from the current weights).
        patience: epochs without a better held-out loss before stopping early.
        holdout: fraction of rows held out for early stopping (none below 10 rows).
        learning_rate: Adam step size.
        max_rows: at most this many rows are trained on (a seeded subsample beyond).
    """

    def __init__(self, n_inputs: int, latent_dim: int = 3, *, hidden: tuple[int, ...] = (64, 32),
                 seed: int = 0, epochs: int = 300, refit_epochs: int = 100, patience: int = 30,
                 holdout: float = 0.2, learning_rate: float = 3e-3,
                 max_rows: int = 20_000) -> None:
        if n_inputs < 1 or latent_dim < 1:
            raise ValueError(f"n_inputs and latent_dim must be >= 1; got {n_inputs}, {latent_dim}")
        if not 0.0 <= holdout < 1.0:
            raise ValueError(f"holdout must be in [0, 1); got {holdout}")
        self.n_inputs = int(n_inputs)
        self.latent_dim = int(latent_dim)
        self.hidden = tuple(int(h) for h in hidden)
        self.seed = int(seed)
        self.epochs = int(epochs)
        self.refit_epochs = int(refit_epochs)
        self.patience = int(patience)
        self.holdout = float(holdout)
        self.learning_rate = float(learning_rate)
        self.max_rows = int(max_rows)
        self.mean = np.zeros(self.n_inputs)
        self.sd = np.ones(self.n_inputs)
        self.fits = 0  # fits so far (0: untrained)
        self.n_trained = 0  # rows of the latest fit
        self.validation_loss: float | None = None
        self.weights = self._initial_weights()

    @property
    def fitted(self) -> bool:
        return self.fits > 0

    def _widths(self) -> list[int]:
        return [self.n_inputs, *self.hidden, self.latent_dim, *reversed(self.hidden),
                self.n_inputs]

    def _network(self) -> Any:
        import torch

        widths = self._widths()
        layers: list[Any] = []
        for index, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            layers.append(torch.nn.Linear(width_in, width_out))
            if index not in (len(self.hidden), len(widths) - 2):  # linear bottleneck, output
                layers.append(torch.nn.Tanh())
        return torch.nn.Sequential(*layers)

    def _initial_weights(self) -> dict[str, np.ndarray]:
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            network = self._network()
        return {name: value.detach().numpy().copy() for name, value in
                network.state_dict().items()}

    def _loaded(self) -> Any:
        import torch

        network = self._network()
        network.load_state_dict({name: torch.from_numpy(value.copy())
                                 for name, value in self.weights.items()})
        return network

    def _encoder_layers(self) -> int:
        return 2 * len(self.hidden) + 1  # Linear+Tanh per hidden layer, then the bottleneck

    def _standardized(self, distances: np.ndarray) -> np.ndarray:
        distances = np.asarray(distances, dtype=np.float64)
        if distances.ndim != 2 or distances.shape[1] != self.n_inputs:
            raise ValueError(f"distances must have shape (n, {self.n_inputs}); "
                             f"got {distances.shape}")
        return (distances - self.mean) / self.sd

    def fit(self, distances: np.ndarray) -> DistanceAutoencoder:
        """Train on ``distances`` (n, P), in place; returns self.

        A first fit runs ``epochs``; a later fit starts from the current weights and runs
        ``refit_epochs`` (a warm start). Either stops early when the held-out
        reconstruction loss has not improved for ``patience`` epochs, keeping the best
        weights seen."""
        import torch

        distances = np.asarray(distances, dtype=np.float64)
        if distances.ndim != 2 or distances.shape[1] != self.n_inputs or len(distances) < 2:
            raise ValueError(f"fit needs distances of shape (n >= 2, {self.n_inputs}); "
                             f"got {distances.shape}")
        rng = np.random.default_rng([self.seed, self.fits, 104729])
        if len(distances) > self.max_rows:
            distances = distances[np.sort(rng.choice(len(distances), self.max_rows,
                                                     replace=False))]
        self.mean = distances.mean(axis=0)
        self.sd = np.maximum(distances.std(axis=0), 1e-6)
        data = torch.from_numpy(self._standardized(distances).astype(np.float32))
        order = rng.permutation(len(data))
        n_held = int(round(self.holdout * len(data))) if len(data) >= 10 else 0
        held, train = data[order[:n_held]], data[order[n_held:]]
        epochs = self.refit_epochs if self.fitted else self.epochs
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed + self.fits)
                network = self._loaded()
                optimizer = torch.optim.Adam(network.parameters(), lr=self.learning_rate)
                best = (float("inf"), copy.deepcopy(network.state_dict()))
                waited = 0
                for _ in range(epochs):
                    optimizer.zero_grad()
                    loss = torch.mean((network(train) - train) ** 2)
                    loss.backward()
                    optimizer.step()
                    with torch.no_grad():
                        check = held if n_held else train
                        score = float(torch.mean((network(check) - check) ** 2))
                    if score < best[0]:
                        best, waited = (score, copy.deepcopy(network.state_dict())), 0
                    else:
                        waited += 1
                        if waited >= self.patience:
                            break
        finally:
            torch.set_num_threads(threads)
        self.weights = {name: value.numpy().copy() for name, value in best[1].items()}
        self.validation_loss = best[0]
        self.fits += 1
        self.n_trained = len(distances)
        return self

    def _linear_layers(self) -> list[tuple[np.ndarray, np.ndarray, bool]]:
        """(weight (out, in), bias, followed by tanh) per linear layer, in float64."""
        widths = self._widths()
        layers, module = [], 0
        for index in range(len(widths) - 1):
            activated = index not in (len(self.hidden), len(widths) - 2)
            layers.append((self.weights[f"{module}.weight"].astype(np.float64),
                           self.weights[f"{module}.bias"].astype(np.float64), activated))
            module += 2 if activated else 1
        return layers

    def _evaluate(self, distances: np.ndarray, n_layers: int) -> np.ndarray:
        """The first ``n_layers`` linear layers applied to standardized ``distances``.

        Float64 numpy, one input column at a time: every output is b + x_0 w_0 + x_1 w_1
        + ... in that order, from elementwise IEEE operations only, so a row's result
        does not depend on which other rows share the batch, nor on threads (a BLAS
        matrix product picks its blocking, and so its rounding, by batch size and CPU)."""
        values = self._standardized(distances)
        for weight, bias, activated in self._linear_layers()[:n_layers]:
            out = np.broadcast_to(bias, (len(values), len(bias))).copy()
            for column in range(weight.shape[1]):
                out += values[:, column:column + 1] * weight[:, column]
            values = np.tanh(out) if activated else out
        return values

    def encode(self, distances: np.ndarray) -> np.ndarray:
        """Latent coordinates of ``distances`` (n, P): (n, latent_dim) float64.

        Row-wise exact: a row's coordinates are bit-for-bit the same whatever else is
        in the batch (see :meth:`_evaluate`)."""
        return self._evaluate(distances, len(self.hidden) + 1)

    def reconstruction_error(self, distances: np.ndarray) -> np.ndarray:
        """Mean squared reconstruction error per row, in standardized units: (n,).
        Row-wise exact, like :meth:`encode`."""
        data = self._standardized(distances)
        return np.mean((self._evaluate(distances, len(self._widths()) - 1) - data) ** 2,
                       axis=1)

    def __repr__(self) -> str:
        return (f"DistanceAutoencoder({self.n_inputs} -> {self.latent_dim}, "
                f"hidden={self.hidden}, seed={self.seed}, fits={self.fits})")


class LatentFeatures:
    """Refittable row featurizer: rows of bead positions -> autoencoder latent coordinates.

    ``__call__(x)`` reads the first 3B numbers of each row of ``x`` (n, >= 3B) as the
    flattened positions of B beads (columns after them, e.g. velocities, are ignored),
    computes the pairwise distances (``distances="pairwise"``) or smooth contact values
    (``"contacts"``, :func:`contact_values` with ``cutoff`` Å), and encodes them:
    (n, latent_dim).

    Before the first :meth:`refit` the features are those of the seeded, untrained
    encoder on unstandardized inputs: a fixed random (nonlinear) projection, deterministic,
    stateless and of the final width, so a campaign's seed design can be featurized (it
    picks at random anyway) and nothing depends on which rows arrived first. The engine
    refits before every learner fit (the refittable-features protocol of
    ``campaign.spec.Promotion``).

    ``refit(x_source)`` returns a new, fitted copy trained on all given rows, starting
    from this one's weights (a warm start after the first fit); self is not changed.
    Deterministic given the rows and ``seed``. Picklable (it travels to Parsl workers).

    Args:
        n_beads: B.
        latent_dim: width of the latent space.
        seed: seeds the autoencoder (see :class:`DistanceAutoencoder`).
        distances: ``"pairwise"`` or ``"contacts"``.
        cutoff: contact cutoff in Å (``"contacts"`` only).
        **autoencoder: further :class:`DistanceAutoencoder` settings (hidden, epochs, ...).
    """

    def __init__(self, n_beads: int, *, latent_dim: int = 3, seed: int = 0,
                 distances: str = "pairwise", cutoff: float = 8.0,
                 **autoencoder: Any) -> None:
        if n_beads < 2:
            raise ValueError(f"need at least 2 beads for distances; got {n_beads}")
        if distances not in DISTANCE_KINDS:
            raise ValueError(f"distances must be one of {DISTANCE_KINDS}; got {distances!r}")
        if cutoff <= 0:
            raise ValueError(f"cutoff must be > 0 Å; got {cutoff}")
        self.n_beads = int(n_beads)
        self.distances = distances
        self.cutoff = float(cutoff)
        self.autoencoder = DistanceAutoencoder(self.n_beads * (self.n_beads - 1) // 2,
                                               latent_dim, seed=seed, **autoencoder)

    @property
    def latent_dim(self) -> int:
        return self.autoencoder.latent_dim

    @property
    def fitted(self) -> bool:
        return self.autoencoder.fitted

    def inputs(self, x: np.ndarray) -> np.ndarray:
        """The autoencoder's inputs for rows ``x`` (n, >= 3B): (n, P)."""
        x = np.asarray(x, dtype=np.float64)
        width = 3 * self.n_beads
        if x.ndim != 2 or x.shape[1] < width:
            raise ValueError(f"x must have shape (n, >= {width}) for {self.n_beads} beads; "
                             f"got {x.shape}")
        distances = bead_distances(x[:, :width].reshape(len(x), self.n_beads, 3))
        if self.distances == "contacts":
            return contact_values(distances, self.cutoff)
        return distances

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Latent coordinates of rows ``x``: (n, latent_dim) float64."""
        x = np.asarray(x, dtype=np.float64)
        if len(x) == 0:
            return np.zeros((0, self.latent_dim))
        return self.autoencoder.encode(self.inputs(x))

    def refit(self, x_source: np.ndarray) -> LatentFeatures:
        """A new featurizer trained on rows ``x_source`` (warm from this one's weights)."""
        fitted = copy.deepcopy(self)
        fitted.autoencoder.fit(self.inputs(x_source))
        return fitted

    def reconstruction_error(self, x: np.ndarray) -> np.ndarray:
        """Per-row reconstruction error of rows ``x`` (n,), e.g. to spot novel frames."""
        return self.autoencoder.reconstruction_error(self.inputs(x))

    def __repr__(self) -> str:
        kind = self.distances if self.distances == "pairwise" else f"contacts<{self.cutoff:g}A"
        return (f"LatentFeatures({self.n_beads} beads, {kind} -> {self.latent_dim}, "
                f"fits={self.autoencoder.fits})")


class LatentAnalysis(AnalysisBase):
    """Latent coordinates of an atom group per frame, from an autoencoder on its distances.

    ``LatentAnalysis(u.select_atoms("name CA")).run()`` computes the group's pairwise
    distances (no periodic images; or contact values with ``distances="contacts"``) in
    every analysed frame, fits a :class:`DistanceAutoencoder` on them when none is given,
    and fills ``results.latent`` (n_frames, latent_dim): the same width for any Universe.

    Args:
        atomgroup: any ``AtomGroup`` (or ``Universe``).
        autoencoder_or_features: a :class:`DistanceAutoencoder` or :class:`LatentFeatures`
            (of the group's size and distance kind) to encode with, unchanged; None fits
            one on the analysed frames.
        latent_dim: width when fitting.
        distances: ``"pairwise"`` or ``"contacts"`` (taken from a given LatentFeatures).
        cutoff: contact cutoff in Å.
        seed: seed when fitting.
        settings: further :class:`DistanceAutoencoder` settings when fitting (epochs, ...).
        **kwargs: ``AnalysisBase`` arguments (``verbose``).

    Results: ``latent`` (F, latent_dim), ``inputs`` (F, P) the encoded distances or
    contact values, ``reconstruction_error`` (F,), ``autoencoder`` the model used.
    """

    def __init__(self, atomgroup: AtomGroup, autoencoder_or_features: Any = None,
                 latent_dim: int = 3, *, distances: str = "pairwise", cutoff: float = 8.0,
                 seed: int = 0, settings: dict[str, Any] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(atomgroup.universe.trajectory, **kwargs)
        self._atoms = atomgroup.atoms
        if self._atoms.n_atoms < 2:
            raise ValueError("LatentAnalysis needs an atom group of at least 2 atoms")
        model = autoencoder_or_features
        if isinstance(model, LatentFeatures):
            distances, cutoff = model.distances, model.cutoff
            model = model.autoencoder
        if distances not in DISTANCE_KINDS:
            raise ValueError(f"distances must be one of {DISTANCE_KINDS}; got {distances!r}")
        n_pairs = self._atoms.n_atoms * (self._atoms.n_atoms - 1) // 2
        if model is not None and (not isinstance(model, DistanceAutoencoder)
                                  or model.n_inputs != n_pairs):
            raise ValueError(f"autoencoder_or_features must be a DistanceAutoencoder or "
                             f"LatentFeatures on {n_pairs} distances "
                             f"({self._atoms.n_atoms} atoms); got {model!r}")
        self._model = model
        self._latent_dim = latent_dim
        self._distances = distances
        self._cutoff = cutoff
        self._seed = seed
        self._settings = dict(settings or {})

    def _prepare(self) -> None:
        n = self._atoms.n_atoms
        self.results.inputs = np.zeros((self.n_frames, n * (n - 1) // 2))

    def _single_frame(self) -> None:
        distances = self_distance_array(self._atoms.positions.astype(np.float64))
        if self._distances == "contacts":
            distances = contact_values(distances, self._cutoff)
        self.results.inputs[self._frame_index] = distances

    def _conclude(self) -> None:
        model = self._model
        if model is None:
            model = DistanceAutoencoder(self.results.inputs.shape[1], self._latent_dim,
                                        seed=self._seed, **self._settings)
            if self.n_frames >= 2:  # one frame: the untrained encoder (see LatentFeatures)
                model = model.fit(self.results.inputs)
        self.results.autoencoder = model
        self.results.latent = model.encode(self.results.inputs)
        self.results.reconstruction_error = model.reconstruction_error(self.results.inputs)
