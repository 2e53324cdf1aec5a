"""Run-level statistics: a cell's latency, and every ratio between two cells, from rounds.

A round is one fresh process (or container) running a cell once, in one time slot. On a shared
machine the variance between processes and time slots (other tenants, steal, frequency, memory
placement) is larger than the variance between the iterations of one process, so iterations
are not independent draws of a cell's speed and a confidence interval computed from them
covers one time slot only (Kalibera & Jones, "Rigorous benchmarking in reasonable time", 2013:
repeat at the level that varies). Here each round contributes one number, its median, and:

- a cell's latency is the geometric mean of its round medians, with a Student-t interval on
  their logarithms (latency is a positive, multiplicative quantity; the t interval is exact for
  normal log-medians and honest about few rounds: with 3 rounds it is wide);
- a ratio between two cells of the same run is computed **within each round** (paired: both
  ran in the same time slot, in a random order) and summarised the same way, so drift that
  moves both cells cancels;
- two runs (compare) are unpaired: Welch's interval on the difference of mean log medians;
- one round alone has no between-round spread: its interval is a bootstrap of its iterations
  and says that it covers one time slot.

A ratio is called faster or slower only when its whole interval lies outside a practical-
equivalence band around 1 (default ±2%); otherwise the two tie.

Pure numpy and math: it runs inside every framework image, without scipy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

CONFIDENCE = 0.95
DEFAULT_EQUIVALENCE_BAND = 0.02
BOOTSTRAP_RESAMPLES = 2000
Z975 = 1.959963984540054
# Two-sided 95% quantiles of Student's t distribution, t(0.975; df), df = 1..30.
T975 = (
    12.706204736,
    4.302652730,
    3.182446305,
    2.776445105,
    2.570581836,
    2.446911851,
    2.364624252,
    2.306004135,
    2.262157163,
    2.228138852,
    2.200985160,
    2.178812830,
    2.160368656,
    2.144786688,
    2.131449546,
    2.119905299,
    2.109815578,
    2.100922040,
    2.093024054,
    2.085963447,
    2.079613845,
    2.073873068,
    2.068657610,
    2.063898562,
    2.059538553,
    2.055529439,
    2.051830516,
    2.048407142,
    2.045229642,
    2.042272456,
)
ONE_SLOT = "one round: a bootstrap of its iterations, which covers one time slot only"


def t975(df: float) -> float:
    """t(0.975; df). Tabulated up to 30 degrees of freedom (a fractional df, from Welch, is
    rounded down: the wider interval); beyond, the Cornish-Fisher expansion around the normal
    quantile (error below 2e-6 there)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be at least 1, not {df}")
    if df < len(T975) + 1:
        return T975[math.floor(df) - 1]
    z = Z975
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    return z + g1 / df + g2 / df**2 + g3 / df**3


@dataclass(frozen=True)
class Estimate:
    """A positive quantity (a latency in ms, or a ratio) with its 95% interval."""

    value: float
    low: float
    high: float
    rounds: int  # how many rounds (or round pairs) it rests on
    method: str

    @property
    def relative_half_width(self) -> float:
        """Half the interval's width on the log scale, as a fraction: 0.02 is about ±2%."""
        return (math.log(self.high) - math.log(self.low)) / 2

    def to_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def log_t_interval(values: Sequence[float], method: str) -> Estimate:
    """Geometric mean of positive values, with the Student-t interval of their logs' mean."""
    x = np.log(np.asarray(values, dtype=np.float64))
    if x.size < 2:
        raise ValueError("an interval across rounds needs at least two rounds")
    if not np.all(np.isfinite(x)):
        raise ValueError("values must be positive and finite")
    mean, sd = float(x.mean()), float(x.std(ddof=1))
    half = t975(x.size - 1) * sd / math.sqrt(x.size)
    return Estimate(
        math.exp(mean), math.exp(mean - half), math.exp(mean + half), int(x.size), method
    )


def latency_estimate(round_medians: Sequence[float]) -> Estimate:
    """A cell's latency from its rounds' medians (at least two)."""
    return log_t_interval(round_medians, "geometric mean of round medians, Student t on logs")


def paired_ratio(numerator: Mapping[int, float], denominator: Mapping[int, float]) -> Estimate:
    """numerator / denominator, computed within each round both cells ran in (round index ->
    that round's median), then summarised across those rounds (at least two)."""
    common = sorted(set(numerator) & set(denominator))
    if len(common) < 2:
        raise ValueError(f"a paired ratio needs two rounds in common, not {len(common)}")
    ratios = [numerator[r] / denominator[r] for r in common]
    return log_t_interval(ratios, "within-round ratios, geometric mean, Student t on logs")


def unpaired_ratio(a: Sequence[float], b: Sequence[float]) -> Estimate:
    """mean(b) / mean(a) on the log scale, for round medians of two different runs (at least
    two each): Welch's interval, since the runs' spreads differ."""
    la, lb = np.log(np.asarray(a, float)), np.log(np.asarray(b, float))
    if la.size < 2 or lb.size < 2:
        raise ValueError("an unpaired ratio needs at least two rounds on each side")
    va, vb = float(la.var(ddof=1)) / la.size, float(lb.var(ddof=1)) / lb.size
    diff = float(lb.mean() - la.mean())
    se = math.sqrt(va + vb)
    if se == 0:
        df = float(la.size + lb.size - 2)
    else:  # Welch-Satterthwaite
        df = (va + vb) ** 2 / (va**2 / (la.size - 1) + vb**2 / (lb.size - 1))
    half = t975(max(df, 1.0)) * se
    return Estimate(
        math.exp(diff),
        math.exp(diff - half),
        math.exp(diff + half),
        int(min(la.size, lb.size)),
        "ratio of run-level geometric means, Welch t on logs",
    )


def samples_ratio(
    a: Sequence[float], b: Sequence[float], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> Estimate:
    """median(b) / median(a) of one round each: a percentile bootstrap of both rounds'
    iterations. Its interval covers one time slot only."""
    xa, xb = np.asarray(a, float), np.asarray(b, float)
    rng = np.random.default_rng(seed)
    med_a = np.median(rng.choice(xa, (resamples, xa.size)), axis=1)
    med_b = np.median(rng.choice(xb, (resamples, xb.size)), axis=1)
    low, high = np.quantile(med_b / med_a, [0.025, 0.975])
    return Estimate(float(np.median(xb) / np.median(xa)), float(low), float(high), 1, ONE_SLOT)


@dataclass(frozen=True)
class Verdict:
    """How b compares with a, from the interval of the time ratio b / a."""

    word: str  # "faster" (b is faster), "slower" (b is slower) or "tie"
    resolved: bool  # the interval lies wholly inside or wholly outside the band


def compare_ratio(ratio: Estimate, band: float = DEFAULT_EQUIVALENCE_BAND) -> Verdict:
    """b's time over a's: faster or slower only when the whole interval is beyond the band
    [1/(1+band), 1+band]; a tie otherwise (resolved when the interval is inside the band,
    unresolved when it straddles one of its edges: more rounds could decide)."""
    if band < 0:
        raise ValueError("the equivalence band must not be negative")
    upper, lower = 1 + band, 1 / (1 + band)
    if ratio.high < lower:
        return Verdict("faster", True)
    if ratio.low > upper:
        return Verdict("slower", True)
    return Verdict("tie", ratio.low >= lower and ratio.high <= upper)
