"""Beat waveforms: each wave of a beat (P, QRS, ST, T, U) is a sum of Gaussian lobes in time, each lobe a
fixed 3D heart-vector direction. Conditions change the lobes (a late rightward-anterior lobe for RBBB, an ST
"injury" plateau for MI, no P lobes for AF, ...). :func:`_templates` builds the normal, atrial premature and
ventricular premature beats of one record; :func:`_render` sums lobes into the heart vector."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from esi.data.synthetic.geometry import _combine, _norm, _unit
from esi.data.synthetic.subject import Subject, realism_profile

# Each lobe: group, centre (s), sigma left/right (s), plateau flag, vector (mV). Groups: 0 = P (time from P
# onset), 1 = QRS (from QRS onset), 2 = ST/T/U (from QRS onset, scaled with the beat's QT).
_P, _QRS, _REPOL = 0, 1, 2


class _Template:
    """Lobes of one beat type as arrays."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, float, float, float, bool, np.ndarray]] = []

    def add(self, group: int, centre: float, sl: float, sr: float, vec: np.ndarray,
            plateau: bool = False) -> None:
        self.rows.append((group, centre, sl, sr, plateau, np.asarray(vec, dtype=float)))

    def arrays(self) -> tuple[np.ndarray, ...]:
        if not self.rows:
            z = np.zeros(0)
            return z.astype(int), z, z, z, z.astype(bool), np.zeros((0, 3))
        g, c, sl, sr, pl, v = zip(*self.rows, strict=True)
        return (np.array(g), np.array(c), np.array(sl), np.array(sr), np.array(pl), np.stack(v))

    def scale_group(self, group: int, factor: float) -> None:
        self.rows = [(g, c, sl, sr, pl, v * factor if g == group else v) for g, c, sl, sr, pl, v in self.rows]


def _render(centre: np.ndarray, sl: np.ndarray, sr: np.ndarray, plateau: np.ndarray, vec: np.ndarray,
            fs: float, n: int) -> np.ndarray:
    """Sum of (asymmetric, optionally flat-topped) Gaussian lobes -> heart vector (n, 3). Each lobe is only
    evaluated on its own support window, and the windows are scattered with bincount (vectorised)."""
    out = np.zeros((n, 3))
    if centre.size == 0:
        return out
    lo = np.floor((centre - 3.5 * sl) * fs).astype(np.int64)  # exp(-3.5^2) < 1e-5: below 1 uV for any lobe
    hi = np.ceil((centre + 3.5 * sr) * fs).astype(np.int64)
    keep = (hi >= 0) & (lo < n)
    span = hi - lo
    # Narrow (QRS, P) and wide (ST-T) lobes are evaluated separately so the window fits each group.
    narrow = span <= 80
    for group in (keep & narrow, keep & ~narrow):
        if not np.any(group):
            continue
        c, a, b, pl, v, lo_g, hi_g = (x[group] for x in (centre, sl, sr, plateau, vec, lo, hi))
        width = int((hi_g - lo_g).max()) + 1
        idx = lo_g[:, None] + np.arange(width)[None, :]
        dt = idx / fs - c[:, None]
        x2 = np.square(dt / np.where(dt < 0, a[:, None], b[:, None]))
        if np.any(pl):
            x2 = np.where(pl[:, None], x2 * x2, x2)
        val = np.exp(-x2)
        valid = (idx >= 0) & (idx < n) & (idx <= hi_g[:, None])
        flat = idx[valid]
        val = val[valid]
        rows = np.broadcast_to(np.arange(c.size)[:, None], idx.shape)[valid]
        for d in range(3):
            out[:, d] += np.bincount(flat, weights=val * v[rows, d], minlength=n)
    return out


@dataclass
class _Morph:
    """Per-record morphology parameters derived from the subject and the conditions."""

    qrs_s: float
    pr_s: float
    qtc_s: float
    has_p: bool


@dataclass
class _Vectors:
    """QRS and repolarisation parameters of a record's normal beat, changed condition by condition."""

    amp: float
    axis: float
    qrs: float
    septal: np.ndarray
    terminal: np.ndarray
    t_vec: np.ndarray
    q_vec: np.ndarray
    st_vec: np.ndarray
    m1_tilt: float
    m2_tilt: float
    rbbb: bool = False
    lbbb: bool = False


def _base_vectors(s: Subject, rng: np.random.Generator) -> _Vectors:
    """The subject's own vectors with this record's small amplitude and axis jitter."""
    sh = s.shape
    amp = s.qrs_amp_mv * float(rng.lognormal(0, 0.03))
    axis = s.axis_deg + float(rng.normal(0, 2))
    # Real ECGs carry a small J-point / ST elevation in V1-V3 (about 0.03-0.05 mV, fading by V5): an ST vector
    # pointing anterior and a little rightward and inferior.
    st = _norm([-0.3, 0.15, 1.0]) * realism_profile(s.realism)["j_point_mv"]
    return _Vectors(amp=amp, axis=axis, qrs=s.qrs_s, septal=_norm([-0.55, 0.3, 0.8]) * s.septal_mv,
                    terminal=_norm([-0.35 + 0.1 * sh[0], -0.6, -0.65]) * s.terminal_mv,
                    t_vec=_unit(s.t_axis_deg, s.t_tilt_deg) * s.t_amp_mv, q_vec=np.zeros(3),
                    st_vec=st, m1_tilt=8.0 + 4 * sh[1], m2_tilt=s.qrs_tilt_deg - 12.0)


def _conduction(v: _Vectors, conds: set[str], s: Subject) -> None:
    """Fascicular and bundle branch blocks, LVH: axis, QRS duration and amplitude."""
    tr = s.traits
    if "LAFB" in conds:
        v.axis = tr["lafb_axis_deg"]
        # Initial inferior-right forces: q in I/aVL, r in II/III/aVF.
        v.septal = _norm([-0.3, 0.85, 0.4]) * max(s.septal_mv, 0.18)
        v.qrs += 0.012
    if "CRBBB" in conds:
        v.rbbb = True
        v.qrs = tr["rbbb_qrs_s"]
    if "CLBBB" in conds:
        v.lbbb = True
        v.qrs = tr["lbbb_qrs_s"]
        v.amp *= 1.25
    if "LVH" in conds:
        v.qrs += 0.01
        v.m2_tilt -= 10.0


def _ischaemia(v: _Vectors, conds: set[str], tr: dict[str, float], st_scale: float = 1.0) -> None:
    """Infarct Q and injury-current vectors, ST depression and T inversion (``st_scale``: the realism
    profile's factor on the injury current, which shrinks with the QRS voltage)."""
    if "IMI" in conds:
        v.q_vec = _norm([0.25, -1.0, 0.05]) * tr["mi_q_mv"]      # initial forces away from the inferior wall
        v.st_vec = _norm([-0.28, 0.96, 0.1]) * tr["mi_st_mv"] * st_scale  # injury current toward II, III, aVF
    elif "AMI" in conds:
        v.q_vec = _norm([-0.15, 0.0, -1.0]) * tr["mi_q_mv"] * 1.2  # away from the anterior wall: QS in V1-V4
        v.st_vec = _norm([0.3, -0.05, 0.95]) * tr["mi_st_mv"] * st_scale
    elif "ASMI" in conds:
        v.q_vec = _norm([0.1, 0.05, -1.0]) * tr["mi_q_mv"]
        v.st_vec = _norm([0.1, -0.05, 1.0]) * tr["mi_st_mv"] * 0.5 * st_scale
    if "STD_" in conds:
        v.st_vec = v.st_vec - _norm([0.6, 0.55, 0.45]) * tr["std_mv"]  # subendocardial: toward aVR, from V5
    if "INVT" in conds:
        if "IMI" in conds:
            v.t_vec = v.t_vec * np.array([1.0, -1.0, 1.0]) * tr["invt"]
        elif conds & {"AMI", "ASMI"}:
            v.t_vec = v.t_vec * np.array([0.6, 1.0, -1.0]) * tr["invt"] - np.array([0, 0, 0.1])
        else:
            v.t_vec = -v.t_vec * tr["invt"]


def _qrs_lobes(n: _Template, v: _Vectors, s: Subject, conds: set[str]) -> None:
    """The QRS lobes of the normal beat (LBBB replaces the normal conduction sequence; RBBB adds to it)."""
    sh, qrs, amp, axis = s.shape, v.qrs, v.amp, v.axis
    lv = min(qrs, 0.092)  # duration of (left) ventricular activation through the normal conduction system
    if v.lbbb:
        # Septum activated right-to-left, LV slowly through muscle: broad notched R in I/aVL/V5-V6, QS in V1.
        main = _unit(axis - 10, -50)
        n.add(_QRS, 0.12 * qrs, 0.08 * qrs, 0.08 * qrs, _norm([0.7, 0.1, -0.4]) * 0.3)
        n.add(_QRS, 0.36 * qrs, 0.13 * qrs, 0.12 * qrs, main * amp * 0.85)
        n.add(_QRS, 0.68 * qrs, 0.12 * qrs, 0.12 * qrs, _unit(axis - 25, -35) * amp * 0.9)
        v.st_vec = v.st_vec - main * realism_profile(s.realism)["lbbb_st"] * amp
        v.t_vec = -main * max(s.t_amp_mv, 0.3) * 1.2  # discordant T
        return
    if np.any(v.q_vec):  # infarct: initial forces point away from the dead wall (pathological Q)
        n.add(_QRS, 0.16 * lv, 0.1 * lv, 0.1 * lv, v.q_vec)
    else:
        n.add(_QRS, 0.13 * lv, 0.07 * lv, 0.07 * lv, v.septal)
    m1 = _unit(axis + 4 * sh[2], v.m1_tilt)
    m2 = _unit(axis - 12 + 4 * sh[3], v.m2_tilt)
    if "AMI" in conds or "ASMI" in conds:
        m1 = _norm(m1 * np.array([1, 1, 0.3]))  # lost anterior forces
    n.add(_QRS, (0.40 + 0.02 * sh[4]) * lv, 0.13 * lv, 0.12 * lv, m1 * amp * 0.75)
    n.add(_QRS, (0.58 + 0.02 * sh[5]) * lv, 0.12 * lv, 0.12 * lv, m2 * amp * 0.75)
    n.add(_QRS, 0.84 * lv, 0.09 * lv, 0.1 * lv, v.terminal)
    if v.rbbb:
        # Late, slow right-ventricular activation, rightward and anterior: R' in V1-V3, wide S in I/V6.
        late = _norm([-0.75, -0.05, 0.65]) * s.traits["rbbb_mv"]
        n.add(_QRS, qrs - 0.034, 0.02, 0.016, late)
        v.t_vec = v.t_vec - late * 0.35


def _repol_lobes(n: _Template, v: _Vectors, s: Subject, qtc: float) -> float:
    """T, U and (if any) the ST plateau of the normal beat; returns the template's T peak time."""
    qt0 = qtc * (60.0 / 75.0) ** (1 / 3)  # template QT at 75 bpm; per beat it is rescaled by its RR
    sr = 0.115 * qt0
    sl = 0.17 * qt0
    t_peak = qt0 - 2.3 * sr
    n.add(_REPOL, t_peak, sl, sr, v.t_vec)
    n.add(_REPOL, qt0 + 0.065, 0.035, 0.03, v.t_vec * (0.08 + 0.03 * s.shape[6]))  # U wave
    if np.any(v.st_vec):
        n.add(_REPOL, v.qrs + 0.085, 0.075, 0.1, v.st_vec, plateau=True)
    return t_peak


def _voltage_constraints(n: _Template, v: _Vectors, conds: set[str], tr: dict[str, float],
                         lead_vectors: np.ndarray, t_peak: float) -> None:
    """Checked on the rendered QRS: LVH meets Sokolow-Lyon, LVOLT stays under 0.5 mV in the limb leads, and
    nobody else meets Sokolow-Lyon by accident. LVH with ST depression gets the strain T pattern."""
    qrs_leads = _qrs_projection(n, lead_vectors)
    if "LVOLT" in conds:
        limb_ptp = float((qrs_leads[:6].max(axis=1) - qrs_leads[:6].min(axis=1)).max())
        n.scale_group(_QRS, tr["lvolt_mv"] / max(limb_ptp, 1e-6))
        n.scale_group(_REPOL, 0.6)
    else:
        sokolow = float(-qrs_leads[6].min() + max(qrs_leads[10].max(), qrs_leads[11].max()))
        if "LVH" in conds and sokolow < tr["lvh_sokolow_mv"]:
            n.scale_group(_QRS, tr["lvh_sokolow_mv"] / max(sokolow, 1e-6))
        elif "LVH" not in conds and not v.lbbb and sokolow > 3.2:
            n.scale_group(_QRS, 3.2 / sokolow)
    if "LVH" in conds and "STD_" in conds:
        main = _unit(v.axis, v.m2_tilt)  # strain: lateral T inversion against the dominant QRS vector
        n.rows = [(g, c, a, b, pl, -main * 0.25 if (g == _REPOL and c == t_peak) else vec)
                  for g, c, a, b, pl, vec in n.rows]


def _ectopic_templates(n: _Template, s: Subject) -> tuple[_Template, _Template]:
    """The atrial premature beat (early, different P from a low atrial focus, normal QRS-T) and the
    ventricular premature beat (no P, wide bizarre QRS from an ectopic focus, discordant ST-T)."""
    tr = s.traits
    a = _Template()
    a.rows = [r for r in n.rows if r[0] != _P]
    a.add(_P, 0.45 * s.p_s, 0.2 * s.p_s, 0.2 * s.p_s, _unit(tr["pac_p_axis_deg"], 10) * s.p_amp_mv * 0.9)
    v = _Template()
    pq = tr["pvc_qrs_s"]
    pv = _unit(tr["pvc_axis_deg"], tr["pvc_tilt_deg"])
    pv2 = _unit(tr["pvc_axis_deg"] + 35, tr["pvc_tilt_deg"] - 20)
    v.add(_QRS, 0.33 * pq, 0.17 * pq, 0.15 * pq, pv * tr["pvc_mv"])
    v.add(_QRS, 0.66 * pq, 0.15 * pq, 0.15 * pq, pv2 * tr["pvc_mv"] * 0.6)
    v.add(_REPOL, pq + 0.2, 0.09, 0.06, -pv * 0.45)
    return a, v


def _templates(subject: Subject, conds: set[str], rng: np.random.Generator,
               lead_vectors: np.ndarray) -> tuple[dict[str, _Template], _Morph]:
    """Beat templates of one record: normal 'N', atrial premature 'A', ventricular premature 'V'."""
    s, tr = subject, subject.traits
    cal = realism_profile(s.realism)
    vec = _base_vectors(s, rng)
    pr = max(tr["pr_1avb_s"] * cal["pr_1avb_scale"], 0.225) if "1AVB" in conds else s.pr_s
    qtc = tr["qtc_long_s"] if "LNGQT" in conds else s.qtc_s
    has_p = not (conds & {"AFIB", "AFLT"})
    _conduction(vec, conds, s)
    _ischaemia(vec, conds, tr, cal["mi_st"])

    n = _Template()
    if has_p:
        p_axis = s.p_axis_deg
        n.add(_P, 0.36 * s.p_s, 0.16 * s.p_s, 0.16 * s.p_s,
              _unit(p_axis + 15, cal["p_tilt_ra"]) * s.p_amp_mv * 0.75)
        n.add(_P, 0.62 * s.p_s, 0.17 * s.p_s, 0.17 * s.p_s,
              _unit(p_axis - 10, cal["p_tilt_la"]) * s.p_amp_mv * 0.8)
    _qrs_lobes(n, vec, s, conds)
    t_peak = _repol_lobes(n, vec, s, qtc)
    _voltage_constraints(n, vec, conds, tr, lead_vectors, t_peak)
    a, v = _ectopic_templates(n, s)
    return {"N": n, "A": a, "V": v}, _Morph(qrs_s=vec.qrs, pr_s=pr, qtc_s=qtc, has_p=has_p)


def _qrs_projection(t: _Template, lead_vectors: np.ndarray, fs: float = 1000.0) -> np.ndarray:
    """The QRS lobes of a template rendered alone and projected onto the 12 leads: (12, samples)."""
    g, c, sl, sr, pl, vec = t.arrays()
    m = g == _QRS
    n = int(0.3 * fs)
    h = _render(c[m] + 0.05, sl[m], sr[m], pl[m], vec[m], fs, n)
    return _combine(lead_vectors, h.T)
