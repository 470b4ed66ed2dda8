"""A compiled MMFF94 energy, gradient and minimizer for small amons (the relaxation's engine).

RDKit assigns the MMFF94 atom types and parameters (:func:`mmff_terms`); this module evaluates
the MMFF94 functional forms (Halgren, J. Comput. Chem. 17, 490 (1996): cubic-quartic bond
stretch, cubic angle bend with the linear form for linear centres, stretch-bend, Wilson
out-of-plane, three-term torsion, buffered 14-7 van der Waals, buffered constant-dielectric
Coulomb with 1-4 pairs scaled by 0.75) with analytic gradients in numba, plus flat-bottomed
dihedral restraints and fixed atoms, and minimizes with dense BFGS.

*Why*: the relaxation dominates 3D amon extraction. RDKit's own minimizer costs about 10 us per
iteration on an 11-atom amon (virtual calls per term, line search through the generic
interface); evaluated here the same energy costs about a tenth of that, so the same minimum is
reached several times faster. Energies and gradients agree with RDKit's MMFF94 force field to
1e-8 kcal/mol (tests/test_amons_mmff.py); the parameters of one atom-ordered amon graph are
extracted once and cached (they depend on the graph only).

Units: angstrom, kcal/mol, degrees for angles in the parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
from rdkit import Chem
from rdkit.Chem import rdForceFieldHelpers

# MMFF94 constants (Halgren 1996)
_MDYNE_A_TO_KCAL = 143.9325  # md/A -> kcal/mol/A^2 (bond stretch, linear bend)
# the kernels below spell out 143.9325 (pi/180)^2 (angle, out-of-plane; 0.043844 in the paper),
# 143.9325 pi/180 (stretch-bend; 2.51210), -0.4 pi/180 per degree (angle cubic term), -2 per
# angstrom (bond cubic term), 0.07 / 0.12 (van der Waals buffers), 0.05 A (Coulomb buffer)
# vectorized dot products in the minimizer's linear algebra (reassociation: the same bits on
# every run on one machine, last-bit differences between CPUs)
_ALGEBRA_FASTMATH = {"reassoc", "contract"}
#: the energy and gradient may use reciprocals and ignore the sign of zero; NaN and infinity
#: keep their IEEE meaning. Not "reassoc"/"contract": with them the last bits of the relaxed
#: positions depended on whether a process compiled the kernels or loaded them from numba's
#: cache (inlining changes), so that worker processes wrote a store 2e-15 angstrom off the
#: serial one (caught by the fresh-clone CI); they were 5% faster on the whole extraction.
_ENERGY_FASTMATH = {"nsz", "arcp"}
#: a line search starts at most this many times the last accepted step length (at most 1)
_STEP_GROWTH = 4.0
#: isotropic curvature (kcal/mol/A^2) added to the bond stretches in the BFGS start Hessian
_ISOTROPIC_CURVATURE = 100.0
_COULOMB = 332.0716  # kcal A / (mol e^2)
_ONE_FOUR_ELECTROSTATIC_SCALE = 0.75
# (MMFF atom type, MMFF atom type) -> (R*_ij, epsilon_ij): a small table, filled as types appear
_VDW_CACHE: dict[tuple[int, int], tuple[float, float]] = {}
#: MMFF94 atom types whose angles are linear ("linh" in MMFFPROP.PAR): sp C, sp N, =N=, isonitrile
_LINEAR_TYPES = frozenset({4, 42, 53, 61})


@dataclass(frozen=True)
class MMFFTerms:
    """The MMFF94 terms of one molecule (atom order fixed), as flat arrays for the kernels.

    Index arrays are int64 atom indices; parameters are float64 in MMFF's own units.
    """

    bonds: np.ndarray  # (nb, 2)
    bond_params: np.ndarray  # (nb, 2): kb (md/A), r0 (A)
    angles: np.ndarray  # (na, 3) i-j-k, j central
    angle_params: np.ndarray  # (na, 6): ka, theta0 (deg), linear (0/1), kba_ijk, kba_kji, 0
    angle_bond_r0: np.ndarray  # (na, 2): r0 of i-j and k-j (A)
    oops: np.ndarray  # (no, 4) i-j-k-l, j central, l out of plane
    oop_params: np.ndarray  # (no,): koop
    torsions: np.ndarray  # (nt, 4)
    torsion_params: np.ndarray  # (nt, 3): V1, V2, V3
    pairs: np.ndarray  # (np, 2) atoms three or more bonds apart
    pair_params: np.ndarray  # (np, 3): R*_ij (A), epsilon_ij, 332.07 q_i q_j * scale


def mmff_terms(mol: Chem.Mol) -> MMFFTerms | None:
    """The MMFF94 terms of an RDKit molecule with explicit H atoms (and a conformer, used
    only when a torsion's parameters must be fitted); None without MMFF94 parameters."""
    return _build_terms(Chem.Mol(mol))


def moving_terms(terms: MMFFTerms, free_atoms: np.ndarray, n_atoms: int) -> MMFFTerms:
    """The terms that involve at least one of ``free_atoms``: the others are constant while
    only those atoms move (same energy up to a constant, same gradient on the free atoms)."""
    free = np.zeros(n_atoms, dtype=bool)
    free[free_atoms] = True

    def keep(index: np.ndarray) -> np.ndarray:
        return free[index].any(axis=1) if len(index) else np.zeros(0, dtype=bool)

    bonds, angles, oops = keep(terms.bonds), keep(terms.angles), keep(terms.oops)
    torsions, pairs = keep(terms.torsions), keep(terms.pairs)
    return MMFFTerms(
        bonds=np.ascontiguousarray(terms.bonds[bonds]),
        bond_params=np.ascontiguousarray(terms.bond_params[bonds]),
        angles=np.ascontiguousarray(terms.angles[angles]),
        angle_params=np.ascontiguousarray(terms.angle_params[angles]),
        angle_bond_r0=np.ascontiguousarray(terms.angle_bond_r0[angles]),
        oops=np.ascontiguousarray(terms.oops[oops]),
        oop_params=np.ascontiguousarray(terms.oop_params[oops]),
        torsions=np.ascontiguousarray(terms.torsions[torsions]),
        torsion_params=np.ascontiguousarray(terms.torsion_params[torsions]),
        pairs=np.ascontiguousarray(terms.pairs[pairs]),
        pair_params=np.ascontiguousarray(terms.pair_params[pairs]),
    )


def permuted(terms: MMFFTerms, new_index: np.ndarray) -> MMFFTerms:
    """The same terms for the atoms renumbered: atom ``a`` becomes ``new_index[a]``."""
    return MMFFTerms(
        bonds=new_index[terms.bonds],
        bond_params=terms.bond_params,
        angles=new_index[terms.angles],
        angle_params=terms.angle_params,
        angle_bond_r0=terms.angle_bond_r0,
        oops=new_index[terms.oops],
        oop_params=terms.oop_params,
        torsions=new_index[terms.torsions],
        torsion_params=terms.torsion_params,
        pairs=new_index[terms.pairs],
        pair_params=terms.pair_params,
    )


def _build_terms(mol: Chem.Mol) -> MMFFTerms | None:
    properties = rdForceFieldHelpers.MMFFGetMoleculeProperties(mol)
    if properties is None:
        return None
    properties.SetMMFFVerbosity(0)
    n_atoms = mol.GetNumAtoms()
    types = [properties.GetMMFFAtomType(i) for i in range(n_atoms)]
    neighbours = [[n.GetIdx() for n in atom.GetNeighbors()] for atom in mol.GetAtoms()]

    bonds, bond_params, r0 = [], [], {}
    for bond in mol.GetBonds():
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        params = properties.GetMMFFBondStretchParams(mol, i, j)
        if params is None:
            return None
        bonds.append((i, j))
        bond_params.append((params[1], params[2]))
        r0[i, j] = r0[j, i] = params[2]

    angles, angle_params, angle_r0 = [], [], []
    for j in range(n_atoms):
        around = neighbours[j]
        for a in range(len(around)):
            for b in range(a + 1, len(around)):
                i, k = around[a], around[b]
                params = properties.GetMMFFAngleBendParams(mol, i, j, k)
                if params is None:
                    return None
                linear = types[j] in _LINEAR_TYPES
                kba_ijk = kba_kji = 0.0
                if not linear:
                    stretch_bend = properties.GetMMFFStretchBendParams(mol, i, j, k)
                    if stretch_bend is not None:
                        kba_ijk, kba_kji = stretch_bend[1], stretch_bend[2]
                angles.append((i, j, k))
                angle_params.append((params[1], params[2], float(linear), kba_ijk, kba_kji, 0.0))
                angle_r0.append((r0[i, j], r0[k, j]))

    oops, oop_params = [], []
    for j in range(n_atoms):
        around = neighbours[j]
        if len(around) != 3:
            continue
        i, k, l = around
        koop = properties.GetMMFFOopBendParams(mol, i, j, k, l)
        if koop is None:
            return None
        if koop == 0.0:
            continue
        for first, second, out in ((i, k, l), (i, l, k), (k, l, i)):
            oops.append((first, j, second, out))
            oop_params.append(koop)

    torsions, torsion_params, unknown = [], [], []
    for bond in mol.GetBonds():
        j, k = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        if types[j] in _LINEAR_TYPES or types[k] in _LINEAR_TYPES:
            continue
        for i in neighbours[j]:
            if i == k:
                continue
            for l in neighbours[k]:
                if l in (j, i):
                    continue
                params = properties.GetMMFFTorsionParams(mol, i, j, k, l)
                if params is None:
                    # RDKit's getter gives no parameters where its force field falls back to
                    # MMFF's empirical rule (e.g. some four-membered rings): fitted below
                    unknown.append(len(torsions))
                    params = (0, 0.0, 0.0, 0.0)
                torsions.append((i, j, k, l))
                torsion_params.append(params[1:])
    if unknown:
        fitted = _fit_torsion_params(mol, torsions, torsion_params, unknown)
        if fitted is None:
            return None
        torsion_params = fitted
    keep = [t for t, params in enumerate(torsion_params) if any(v != 0.0 for v in params)]
    torsions = [torsions[t] for t in keep]
    torsion_params = [torsion_params[t] for t in keep]

    distance = Chem.GetDistanceMatrix(mol)
    first, second = np.triu_indices(n_atoms, 1)
    apart = distance[first, second] >= 3  # van der Waals and Coulomb from 1-4 on
    first, second = first[apart], second[apart]
    charges = np.array([properties.GetMMFFPartialCharge(i) for i in range(n_atoms)])
    pair_params = np.empty((len(first), 3))
    for row, (i, j) in enumerate(zip(first.tolist(), second.tolist(), strict=True)):
        type_pair = (types[i], types[j])
        vdw = _VDW_CACHE.get(type_pair)
        if vdw is None:
            # MMFF94 van der Waals parameters depend on the two atom types only
            vdw = properties.GetMMFFVdWParams(i, j)
            if vdw is None:
                return None
            vdw = _VDW_CACHE[type_pair] = (vdw[2], vdw[3])
        pair_params[row, :2] = vdw
    scale = np.where(distance[first, second] == 3, _ONE_FOUR_ELECTROSTATIC_SCALE, 1.0)
    pair_params[:, 2] = _COULOMB * charges[first] * charges[second] * scale
    pairs = np.column_stack((first, second))

    def indices(rows, width):
        return np.array(rows, dtype=np.int64).reshape(-1, width)

    def floats(rows, width):
        return np.array(rows, dtype=np.float64).reshape(-1, width)

    return MMFFTerms(
        bonds=indices(bonds, 2),
        bond_params=floats(bond_params, 2),
        angles=indices(angles, 3),
        angle_params=floats(angle_params, 6),
        angle_bond_r0=floats(angle_r0, 2),
        oops=indices(oops, 4),
        oop_params=np.array(oop_params, dtype=np.float64),
        torsions=indices(torsions, 4),
        torsion_params=floats(torsion_params, 3),
        pairs=indices(pairs, 2),
        pair_params=floats(pair_params, 3),
    )


def _fit_torsion_params(mol, torsions, torsion_params, unknown):
    """(V1, V2, V3) of the torsions in ``unknown`` from RDKit's torsion-only MMFF94 energy.

    The torsion energy is linear in the parameters, so energies at a few perturbed geometries
    determine them exactly (least squares; the fit must reproduce the energies to 1e-8).
    """
    properties = rdForceFieldHelpers.MMFFGetMoleculeProperties(mol)
    properties.SetMMFFVerbosity(0)
    for name in ("Bond", "Angle", "StretchBend", "Oop", "VdW", "Ele"):
        getattr(properties, f"SetMMFF{name}Term")(False)
    if mol.GetNumConformers() == 0:
        return None
    field = rdForceFieldHelpers.MMFFGetMoleculeForceField(mol, properties)
    start = np.asarray(mol.GetConformer().GetPositions(), dtype=np.float64)
    rng = np.random.default_rng(0)  # fixed: the fit is deterministic
    n_samples = 3 * len(unknown) + 8
    samples = start[None] + rng.normal(scale=0.3, size=(n_samples, *start.shape))
    index = np.array(torsions, dtype=np.int64)
    phi = np.radians(_dihedrals_degrees(samples, index))  # (n_samples, n_torsions)
    basis = 0.5 * np.stack((1 + np.cos(phi), 1 - np.cos(2 * phi), 1 + np.cos(3 * phi)), axis=2)
    known = np.array(torsion_params, dtype=np.float64)
    energies = np.array([field.CalcEnergy(sample.ravel().tolist()) for sample in samples])
    targets = energies - np.einsum("stv,tv->s", basis, known)
    rows = basis[:, unknown, :].reshape(n_samples, -1)
    solution, *_ = np.linalg.lstsq(rows, targets, rcond=None)
    if np.max(np.abs(rows @ solution - targets)) > 1e-8:
        return None
    out = [tuple(float(v) for v in row) for row in known]
    # rounded, so that the result does not depend on the geometry it was fitted at
    solution = np.round(solution, 7)
    for slot, t in enumerate(unknown):
        out[t] = tuple(float(v) for v in solution[3 * slot : 3 * slot + 3])
    return out


def _dihedrals_degrees(positions: np.ndarray, quadruples: np.ndarray) -> np.ndarray:
    """Dihedrals (degrees) of (n, 4) quadruples for a stack of geometries (..., atoms, 3)."""
    p0, p1, p2, p3 = (positions[..., quadruples[:, c], :] for c in range(4))
    b0, b1, b2 = p1 - p0, p2 - p1, p3 - p2
    n1, n2 = _cross(b0, b1), _cross(b1, b2)
    m1 = _cross(n1, b1 / np.linalg.norm(b1, axis=-1, keepdims=True))
    return np.degrees(np.arctan2(-np.sum(m1 * n2, axis=-1), np.sum(n1 * n2, axis=-1)))


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.empty(np.broadcast_shapes(a.shape, b.shape))
    out[..., 0] = a[..., 1] * b[..., 2] - a[..., 2] * b[..., 1]
    out[..., 1] = a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2]
    out[..., 2] = a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]
    return out


# ---- kernels ------------------------------------------------------------------------------------


@numba.njit(cache=True, fastmath=_ENERGY_FASTMATH)
def _dihedral_and_gradient(x, i, j, k, l, grad_out):
    """Dihedral i-j-k-l: (cos, sin, defined); its gradient (radians) goes into grad_out (4, 3).

    The sign is IUPAC's; ``defined`` is False (and all zero) when three atoms are collinear.
    """
    f0 = x[i, 0] - x[j, 0]
    f1 = x[i, 1] - x[j, 1]
    f2 = x[i, 2] - x[j, 2]
    g0 = x[j, 0] - x[k, 0]
    g1 = x[j, 1] - x[k, 1]
    g2 = x[j, 2] - x[k, 2]
    h0 = x[l, 0] - x[k, 0]
    h1 = x[l, 1] - x[k, 1]
    h2 = x[l, 2] - x[k, 2]
    # A = F x G, B = H x G
    a0 = f1 * g2 - f2 * g1
    a1 = f2 * g0 - f0 * g2
    a2 = f0 * g1 - f1 * g0
    b0 = h1 * g2 - h2 * g1
    b1 = h2 * g0 - h0 * g2
    b2 = h0 * g1 - h1 * g0
    aa = a0 * a0 + a1 * a1 + a2 * a2
    bb = b0 * b0 + b1 * b1 + b2 * b2
    gn = math.sqrt(g0 * g0 + g1 * g1 + g2 * g2)
    if aa < 1e-20 or bb < 1e-20 or gn < 1e-10:
        for r in range(4):
            for c in range(3):
                grad_out[r, c] = 0.0
        return 1.0, 0.0, False
    # cos = A.B/|A||B| and sin = (B x A).G/(|A||B||G|)
    norm = math.sqrt(aa * bb)
    cos_phi = (a0 * b0 + a1 * b1 + a2 * b2) / norm
    c0 = b1 * a2 - b2 * a1
    c1 = b2 * a0 - b0 * a2
    c2 = b0 * a1 - b1 * a0
    sin_phi = (c0 * g0 + c1 * g1 + c2 * g2) / (gn * norm)
    fg = f0 * g0 + f1 * g1 + f2 * g2
    hg = h0 * g0 + h1 * g1 + h2 * g2
    ga = gn / aa
    gb = gn / bb
    fa = fg / (aa * gn)
    hb = hg / (bb * gn)
    grad_out[0, 0] = -ga * a0
    grad_out[0, 1] = -ga * a1
    grad_out[0, 2] = -ga * a2
    grad_out[3, 0] = gb * b0
    grad_out[3, 1] = gb * b1
    grad_out[3, 2] = gb * b2
    grad_out[1, 0] = ga * a0 + fa * a0 - hb * b0
    grad_out[1, 1] = ga * a1 + fa * a1 - hb * b1
    grad_out[1, 2] = ga * a2 + fa * a2 - hb * b2
    grad_out[2, 0] = -gb * b0 - fa * a0 + hb * b0
    grad_out[2, 1] = -gb * b1 - fa * a1 + hb * b1
    grad_out[2, 2] = -gb * b2 - fa * a2 + hb * b2
    return cos_phi, sin_phi, True


@numba.njit(cache=True, fastmath=_ENERGY_FASTMATH)
def _energy_gradient(
    x,
    grad,
    bonds,
    bond_params,
    angles,
    angle_params,
    angle_r0,
    oops,
    oop_params,
    torsions,
    torsion_params,
    pairs,
    pair_params,
    restraints,
    restraint_params,
):
    """MMFF94 energy (kcal/mol) at positions x (n, 3); the gradient is written into grad."""
    for a in range(grad.shape[0]):
        grad[a, 0] = 0.0
        grad[a, 1] = 0.0
        grad[a, 2] = 0.0
    energy = 0.0
    deg = 180.0 / math.pi
    # bond stretch
    for t in range(bonds.shape[0]):
        i = bonds[t, 0]
        j = bonds[t, 1]
        d0 = x[i, 0] - x[j, 0]
        d1 = x[i, 1] - x[j, 1]
        d2 = x[i, 2] - x[j, 2]
        r = math.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
        kb = bond_params[t, 0]
        dr = r - bond_params[t, 1]
        cs = -2.0
        energy += 0.5 * 143.9325 * kb * dr * dr * (1.0 + cs * dr + 7.0 / 12.0 * cs * cs * dr * dr)
        de = 143.9325 * kb * dr * (1.0 + 1.5 * cs * dr + 7.0 / 6.0 * cs * cs * dr * dr) / r
        grad[i, 0] += de * d0
        grad[i, 1] += de * d1
        grad[i, 2] += de * d2
        grad[j, 0] -= de * d0
        grad[j, 1] -= de * d1
        grad[j, 2] -= de * d2
    # angle bend and stretch-bend
    for t in range(angles.shape[0]):
        i = angles[t, 0]
        j = angles[t, 1]
        k = angles[t, 2]
        u0 = x[i, 0] - x[j, 0]
        u1 = x[i, 1] - x[j, 1]
        u2 = x[i, 2] - x[j, 2]
        v0 = x[k, 0] - x[j, 0]
        v1 = x[k, 1] - x[j, 1]
        v2 = x[k, 2] - x[j, 2]
        ru = math.sqrt(u0 * u0 + u1 * u1 + u2 * u2)
        rv = math.sqrt(v0 * v0 + v1 * v1 + v2 * v2)
        cos_t = (u0 * v0 + u1 * v1 + u2 * v2) / (ru * rv)
        if cos_t > 1.0:
            cos_t = 1.0
        elif cos_t < -1.0:
            cos_t = -1.0
        ka = angle_params[t, 0]
        # d cos / d r_i and d cos / d r_k
        ci0 = (v0 / rv - cos_t * u0 / ru) / ru
        ci1 = (v1 / rv - cos_t * u1 / ru) / ru
        ci2 = (v2 / rv - cos_t * u2 / ru) / ru
        ck0 = (u0 / ru - cos_t * v0 / rv) / rv
        ck1 = (u1 / ru - cos_t * v1 / rv) / rv
        ck2 = (u2 / ru - cos_t * v2 / rv) / rv
        if angle_params[t, 2] > 0.5:
            # linear centre: E = 143.9325 ka (1 + cos theta)
            energy += 143.9325 * ka * (1.0 + cos_t)
            de_dcos = 143.9325 * ka
            grad[i, 0] += de_dcos * ci0
            grad[i, 1] += de_dcos * ci1
            grad[i, 2] += de_dcos * ci2
            grad[k, 0] += de_dcos * ck0
            grad[k, 1] += de_dcos * ck1
            grad[k, 2] += de_dcos * ck2
            grad[j, 0] -= de_dcos * (ci0 + ck0)
            grad[j, 1] -= de_dcos * (ci1 + ck1)
            grad[j, 2] -= de_dcos * (ci2 + ck2)
            continue
        theta = math.acos(cos_t) * deg
        dt = theta - angle_params[t, 1]
        cb = -0.4 / deg
        c2 = 143.9325 / (deg * deg)
        energy += 0.5 * c2 * ka * dt * dt * (1.0 + cb * dt)
        de_dtheta = c2 * ka * dt * (1.0 + 1.5 * cb * dt)
        # stretch-bend: 2.51210 (kba_ijk dr_ij + kba_kji dr_kj) dtheta
        c5 = 143.9325 / deg
        kba_ijk = angle_params[t, 3]
        kba_kji = angle_params[t, 4]
        de_dru = 0.0
        de_drv = 0.0
        if kba_ijk != 0.0 or kba_kji != 0.0:
            dru = ru - angle_r0[t, 0]
            drv = rv - angle_r0[t, 1]
            energy += c5 * (kba_ijk * dru + kba_kji * drv) * dt
            de_dtheta += c5 * (kba_ijk * dru + kba_kji * drv)
            de_dru = c5 * kba_ijk * dt / ru
            de_drv = c5 * kba_kji * dt / rv
        sin_t = math.sqrt(max(1.0 - cos_t * cos_t, 1e-16))
        de_dcos = -de_dtheta * deg / sin_t
        gi0 = de_dcos * ci0 + de_dru * u0
        gi1 = de_dcos * ci1 + de_dru * u1
        gi2 = de_dcos * ci2 + de_dru * u2
        gk0 = de_dcos * ck0 + de_drv * v0
        gk1 = de_dcos * ck1 + de_drv * v1
        gk2 = de_dcos * ck2 + de_drv * v2
        grad[i, 0] += gi0
        grad[i, 1] += gi1
        grad[i, 2] += gi2
        grad[k, 0] += gk0
        grad[k, 1] += gk1
        grad[k, 2] += gk2
        grad[j, 0] -= gi0 + gk0
        grad[j, 1] -= gi1 + gk1
        grad[j, 2] -= gi2 + gk2
    # out-of-plane bend (Wilson angle of j-l against the plane i-j-k)
    for t in range(oops.shape[0]):
        i = oops[t, 0]
        j = oops[t, 1]
        k = oops[t, 2]
        l = oops[t, 3]
        ei0 = x[i, 0] - x[j, 0]
        ei1 = x[i, 1] - x[j, 1]
        ei2 = x[i, 2] - x[j, 2]
        ek0 = x[k, 0] - x[j, 0]
        ek1 = x[k, 1] - x[j, 1]
        ek2 = x[k, 2] - x[j, 2]
        el0 = x[l, 0] - x[j, 0]
        el1 = x[l, 1] - x[j, 1]
        el2 = x[l, 2] - x[j, 2]
        ri = math.sqrt(ei0 * ei0 + ei1 * ei1 + ei2 * ei2)
        rk = math.sqrt(ek0 * ek0 + ek1 * ek1 + ek2 * ek2)
        rl = math.sqrt(el0 * el0 + el1 * el1 + el2 * el2)
        ei0 /= ri
        ei1 /= ri
        ei2 /= ri
        ek0 /= rk
        ek1 /= rk
        ek2 /= rk
        el0 /= rl
        el1 /= rl
        el2 /= rl
        n0 = ei1 * ek2 - ei2 * ek1
        n1 = ei2 * ek0 - ei0 * ek2
        n2 = ei0 * ek1 - ei1 * ek0
        cos_t = ei0 * ek0 + ei1 * ek1 + ei2 * ek2
        sin_t = math.sqrt(max(1.0 - cos_t * cos_t, 1e-16))
        sin_chi = (n0 * el0 + n1 * el1 + n2 * el2) / sin_t
        if sin_chi > 1.0:
            sin_chi = 1.0
        elif sin_chi < -1.0:
            sin_chi = -1.0
        chi = math.asin(sin_chi)
        chi_deg = chi * deg
        koop = oop_params[t]
        c2 = 143.9325 / (deg * deg)
        energy += 0.5 * c2 * koop * chi_deg * chi_deg
        cos_chi = math.cos(chi)
        if cos_chi < 1e-8:
            continue
        de_dchi = c2 * koop * chi_deg * deg
        tan_chi = sin_chi / cos_chi
        s2 = sin_t * sin_t
        # e_k x e_l, e_l x e_i, e_i x e_k
        kl0 = ek1 * el2 - ek2 * el1
        kl1 = ek2 * el0 - ek0 * el2
        kl2 = ek0 * el1 - ek1 * el0
        li0 = el1 * ei2 - el2 * ei1
        li1 = el2 * ei0 - el0 * ei2
        li2 = el0 * ei1 - el1 * ei0
        w = 1.0 / (cos_chi * sin_t)
        gl0 = (n0 * w - tan_chi * el0) / rl
        gl1 = (n1 * w - tan_chi * el1) / rl
        gl2 = (n2 * w - tan_chi * el2) / rl
        gi0 = (kl0 * w - tan_chi / s2 * (ei0 - cos_t * ek0)) / ri
        gi1 = (kl1 * w - tan_chi / s2 * (ei1 - cos_t * ek1)) / ri
        gi2 = (kl2 * w - tan_chi / s2 * (ei2 - cos_t * ek2)) / ri
        gk0 = (li0 * w - tan_chi / s2 * (ek0 - cos_t * ei0)) / rk
        gk1 = (li1 * w - tan_chi / s2 * (ek1 - cos_t * ei1)) / rk
        gk2 = (li2 * w - tan_chi / s2 * (ek2 - cos_t * ei2)) / rk
        grad[i, 0] += de_dchi * gi0
        grad[i, 1] += de_dchi * gi1
        grad[i, 2] += de_dchi * gi2
        grad[k, 0] += de_dchi * gk0
        grad[k, 1] += de_dchi * gk1
        grad[k, 2] += de_dchi * gk2
        grad[l, 0] += de_dchi * gl0
        grad[l, 1] += de_dchi * gl1
        grad[l, 2] += de_dchi * gl2
        grad[j, 0] -= de_dchi * (gi0 + gk0 + gl0)
        grad[j, 1] -= de_dchi * (gi1 + gk1 + gl1)
        grad[j, 2] -= de_dchi * (gi2 + gk2 + gl2)
    # torsions
    dphi = np.empty((4, 3))
    for t in range(torsions.shape[0]):
        i = torsions[t, 0]
        j = torsions[t, 1]
        k = torsions[t, 2]
        l = torsions[t, 3]
        cos1, sin1, ok = _dihedral_and_gradient(x, i, j, k, l, dphi)
        v1 = torsion_params[t, 0]
        v2 = torsion_params[t, 1]
        v3 = torsion_params[t, 2]
        cos2 = 2.0 * cos1 * cos1 - 1.0
        cos3 = cos1 * (4.0 * cos1 * cos1 - 3.0)
        energy += 0.5 * (v1 * (1.0 + cos1) + v2 * (1.0 - cos2) + v3 * (1.0 + cos3))
        if not ok:
            continue
        sin2 = 2.0 * sin1 * cos1
        sin3 = sin1 * (3.0 - 4.0 * sin1 * sin1)
        de = 0.5 * (-v1 * sin1 + 2.0 * v2 * sin2 - 3.0 * v3 * sin3)
        for c in range(3):
            grad[i, c] += de * dphi[0, c]
            grad[j, c] += de * dphi[1, c]
            grad[k, c] += de * dphi[2, c]
            grad[l, c] += de * dphi[3, c]
    # van der Waals (buffered 14-7) and electrostatics (buffered, constant dielectric)
    for t in range(pairs.shape[0]):
        i = pairs[t, 0]
        j = pairs[t, 1]
        d0 = x[i, 0] - x[j, 0]
        d1 = x[i, 1] - x[j, 1]
        d2 = x[i, 2] - x[j, 2]
        r = math.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
        rstar = pair_params[t, 0]
        eps = pair_params[t, 1]
        qq = pair_params[t, 2]
        rs2 = rstar * rstar
        rs7 = rs2 * rs2 * rs2 * rstar
        r2 = r * r
        r6 = r2 * r2 * r2
        r7 = r6 * r
        ratio = 1.07 * rstar / (r + 0.07 * rstar)
        ratio2 = ratio * ratio
        first = ratio2 * ratio2 * ratio2 * ratio
        denominator = r7 + 0.12 * rs7
        second = 1.12 * rs7 / denominator - 2.0
        energy += eps * first * second
        dfirst = -7.0 * first / (r + 0.07 * rstar)
        dsecond = -7.84 * rs7 * r6 / (denominator * denominator)
        de = eps * (dfirst * second + first * dsecond)
        if qq != 0.0:
            energy += qq / (r + 0.05)
            de -= qq / (r + 0.05) ** 2
        de /= r
        grad[i, 0] += de * d0
        grad[i, 1] += de * d1
        grad[i, 2] += de * d2
        grad[j, 0] -= de * d0
        grad[j, 1] -= de * d1
        grad[j, 2] -= de * d2
    # flat-bottomed dihedral restraints: window [lo, hi] degrees; E = k excess^2, excess in
    # degrees (RDKit's MMFF torsion constraint, whose k is in kcal/mol/deg^2)
    for t in range(restraints.shape[0]):
        i = restraints[t, 0]
        j = restraints[t, 1]
        k = restraints[t, 2]
        l = restraints[t, 3]
        cos_phi, sin_phi, ok = _dihedral_and_gradient(x, i, j, k, l, dphi)
        if not ok:
            continue
        phi = math.atan2(sin_phi, cos_phi)
        lo = restraint_params[t, 0]
        hi = restraint_params[t, 1]
        centre = 0.5 * (lo + hi)
        offset = phi * deg - centre
        offset = (offset + 180.0) % 360.0 - 180.0
        half = 0.5 * (hi - lo)
        if offset > half:
            excess = offset - half
        elif offset < -half:
            excess = offset + half
        else:
            continue
        energy += restraint_params[t, 2] * excess * excess
        de = 2.0 * restraint_params[t, 2] * excess * deg
        for c in range(3):
            grad[i, c] += de * dphi[0, c]
            grad[j, c] += de * dphi[1, c]
            grad[k, c] += de * dphi[2, c]
            grad[l, c] += de * dphi[3, c]
    return energy


@numba.njit(cache=True)
def _initial_inverse_blocks(x, free, bonds, bond_params, isotropic):
    """(n_free, 3, 3) inverse of a block-diagonal model Hessian: per free atom, its bond
    stretches plus ``isotropic`` kcal/mol/A^2 (for the angles and torsions). It preconditions
    the minimizer: the stiff bond modes are scaled out from the first step."""
    n_free = free.shape[0]
    slot = np.full(x.shape[0], -1, dtype=np.int64)
    for a in range(n_free):
        slot[free[a]] = a
    blocks = np.zeros((n_free, 3, 3))
    for a in range(n_free):
        for c in range(3):
            blocks[a, c, c] = isotropic
    for t in range(bonds.shape[0]):
        i = bonds[t, 0]
        j = bonds[t, 1]
        d0 = x[i, 0] - x[j, 0]
        d1 = x[i, 1] - x[j, 1]
        d2 = x[i, 2] - x[j, 2]
        r2 = d0 * d0 + d1 * d1 + d2 * d2
        stiffness = 143.9325 * bond_params[t, 0] / r2
        for atom in (i, j):
            a = slot[atom]
            if a < 0:
                continue
            blocks[a, 0, 0] += stiffness * d0 * d0
            blocks[a, 0, 1] += stiffness * d0 * d1
            blocks[a, 0, 2] += stiffness * d0 * d2
            blocks[a, 1, 1] += stiffness * d1 * d1
            blocks[a, 1, 2] += stiffness * d1 * d2
            blocks[a, 2, 2] += stiffness * d2 * d2
    for a in range(n_free):
        _invert_symmetric_3x3(blocks[a])
    return blocks


@numba.njit(cache=True)
def _invert_symmetric_3x3(b):
    """Invert the symmetric 3x3 matrix whose upper triangle is in ``b``, in place (adjugate
    over determinant: a LAPACK call per atom cost more than the rest of the start Hessian)."""
    a00, a01, a02 = b[0, 0], b[0, 1], b[0, 2]
    a11, a12, a22 = b[1, 1], b[1, 2], b[2, 2]
    c00 = a11 * a22 - a12 * a12
    c01 = a02 * a12 - a01 * a22
    c02 = a01 * a12 - a02 * a11
    c11 = a00 * a22 - a02 * a02
    c12 = a01 * a02 - a00 * a12
    c22 = a00 * a11 - a01 * a01
    inverse_determinant = 1.0 / (a00 * c00 + a01 * c01 + a02 * c02)
    b[0, 0] = c00 * inverse_determinant
    b[1, 1] = c11 * inverse_determinant
    b[2, 2] = c22 * inverse_determinant
    b[0, 1] = b[1, 0] = c01 * inverse_determinant
    b[0, 2] = b[2, 0] = c02 * inverse_determinant
    b[1, 2] = b[2, 1] = c12 * inverse_determinant


@numba.njit(cache=True)
def _minimize(
    x,
    free,
    max_iterations,
    gradient_tolerance,
    isotropic,
    bonds,
    bond_params,
    angles,
    angle_params,
    angle_r0,
    oops,
    oop_params,
    torsions,
    torsion_params,
    pairs,
    pair_params,
    restraints,
    restraint_params,
):
    """Preconditioned BFGS on the coordinates of the free atoms; x (n, 3) is updated in place.

    The start inverse Hessian is block-diagonal (:func:`_initial_inverse_blocks`). Returns
    (energy, iterations, energy evaluations, converged). Converged: the largest gradient
    component on a free atom is below ``gradient_tolerance`` (kcal/mol/A).
    """
    n_free = free.shape[0]
    m = 3 * n_free
    grad = np.empty_like(x)
    evaluations = 1
    energy = _energy_gradient(
        x, grad, bonds, bond_params, angles, angle_params, angle_r0, oops, oop_params,
        torsions, torsion_params, pairs, pair_params, restraints, restraint_params,
    )  # fmt: skip
    g = np.empty(m)
    for a in range(n_free):
        for c in range(3):
            g[3 * a + c] = grad[free[a], c]
    inverse_hessian = np.zeros((m, m))
    _reset_inverse_hessian(inverse_hessian, x, free, bonds, bond_params, isotropic)
    x_new = x.copy()
    g_new = np.empty(m)
    step = np.empty(m)
    s_vec = np.empty(m)
    y_vec = np.empty(m)
    hy = np.empty(m)
    max_step = 0.3  # angstrom per coordinate
    # the accepted step length of the last iteration: the next line search starts at most
    # _STEP_GROWTH times longer (a full step when the last one was), instead of always at 1. Once
    # the stiff dihedral restraints engage, full quasi-Newton steps overshoot into them; starting
    # near the last accepted length cut the energy evaluations of the restrained step by 20-30%
    # on QM9 amons (8% less CPU for whole queries). The minima's energies agree to 0.003
    # kcal/mol; along flat modes 1% of the geometries end 0.1-0.2 A away (a different path).
    last_alpha = 1.0
    for iteration in range(max_iterations):
        g_max = 0.0
        for p in range(m):
            if abs(g[p]) > g_max:
                g_max = abs(g[p])
        if g_max < gradient_tolerance:
            return energy, iteration, evaluations, True
        slope, biggest = _direction(inverse_hessian, g, step)
        if slope >= 0.0:
            # not a descent direction: restart from the model Hessian
            _reset_inverse_hessian(inverse_hessian, x, free, bonds, bond_params, isotropic)
            slope, biggest = _direction(inverse_hessian, g, step)
        alpha = min(1.0, _STEP_GROWTH * last_alpha)
        if biggest > max_step:
            alpha = max_step / biggest
        # backtracking line search (Armijo), quadratic interpolation
        accepted = False
        energy_new = energy
        for _ in range(40):
            for a in range(n_free):
                for c in range(3):
                    x_new[free[a], c] = x[free[a], c] + alpha * step[3 * a + c]
            evaluations += 1
            energy_new = _energy_gradient(
                x_new, grad, bonds, bond_params, angles, angle_params, angle_r0, oops,
                oop_params, torsions, torsion_params, pairs, pair_params, restraints,
                restraint_params,
            )  # fmt: skip
            if energy_new <= energy + 1e-4 * alpha * slope:
                accepted = True
                break
            denominator = 2.0 * (energy_new - energy - alpha * slope)
            trial = -slope * alpha * alpha / denominator if denominator > 0.0 else 0.5 * alpha
            if trial < 0.1 * alpha:
                trial = 0.1 * alpha
            elif trial > 0.5 * alpha:
                trial = 0.5 * alpha
            alpha = trial
        if not accepted:
            return energy, iteration, evaluations, False  # no decrease: stalled
        last_alpha = alpha
        # BFGS update of the inverse Hessian with s = x_new - x, y = g_new - g
        sy = 0.0
        ss = 0.0
        yy = 0.0
        for a in range(n_free):
            for c in range(3):
                p = 3 * a + c
                g_new[p] = grad[free[a], c]
                s_vec[p] = alpha * step[p]
                y_vec[p] = g_new[p] - g[p]
                sy += s_vec[p] * y_vec[p]
                ss += s_vec[p] * s_vec[p]
                yy += y_vec[p] * y_vec[p]
        if sy > 1e-10 * math.sqrt(ss * yy):
            _bfgs_update(inverse_hessian, s_vec, y_vec, sy, hy)
        for a in range(n_free):
            for c in range(3):
                x[free[a], c] = x_new[free[a], c]
        energy = energy_new
        for p in range(m):
            g[p] = g_new[p]
    return energy, max_iterations, evaluations, False


@numba.njit(cache=True, fastmath=_ALGEBRA_FASTMATH)
def _bfgs_update(inverse_hessian, s_vec, y_vec, sy, hy):
    """BFGS update of the inverse Hessian in place (s: step, y: change of the gradient)."""
    m = s_vec.shape[0]
    yhy = 0.0
    for p in range(m):
        row = inverse_hessian[p]
        h = 0.0
        for q in range(m):
            h += row[q] * y_vec[q]
        hy[p] = h
        yhy += y_vec[p] * h
    rho = 1.0 / sy
    factor = (1.0 + rho * yhy) * rho
    for p in range(m):
        row = inverse_hessian[p]
        along_s = factor * s_vec[p] - rho * hy[p]
        along_hy = -rho * s_vec[p]
        for q in range(m):
            row[q] += along_s * s_vec[q] + along_hy * hy[q]


@numba.njit(cache=True, fastmath=_ALGEBRA_FASTMATH)
def _direction(inverse_hessian, g, step):
    """step = -H g; returns (slope g.step, largest |step| component)."""
    m = g.shape[0]
    slope = 0.0
    biggest = 0.0
    for p in range(m):
        row = inverse_hessian[p]
        s = 0.0
        for q in range(m):
            s -= row[q] * g[q]
        step[p] = s
        slope += s * g[p]
        if abs(s) > biggest:
            biggest = abs(s)
    return slope, biggest


@numba.njit(cache=True)
def _reset_inverse_hessian(inverse_hessian, x, free, bonds, bond_params, isotropic):
    blocks = _initial_inverse_blocks(x, free, bonds, bond_params, isotropic)
    inverse_hessian[:, :] = 0.0
    for a in range(blocks.shape[0]):
        for p in range(3):
            for q in range(3):
                inverse_hessian[3 * a + p, 3 * a + q] = blocks[a, p, q]


@numba.njit(cache=True)
def dihedral_geometry(x, quadruples):
    """Per (i, j, k, l): dihedral (degrees, IUPAC sign, as
    :func:`amondask.amons.geometry.dihedral_angles_degrees`) and the larger of the two bond
    angles i-j-k, j-k-l (degrees). Compiled: the relaxation's bookkeeping stays cheap."""
    n = quadruples.shape[0]
    dihedral = np.empty(n)
    largest_angle = np.empty(n)
    scratch = np.empty((4, 3))
    deg = 180.0 / math.pi
    for t in range(n):
        i = quadruples[t, 0]
        j = quadruples[t, 1]
        k = quadruples[t, 2]
        l = quadruples[t, 3]
        cos_phi, sin_phi, ok = _dihedral_and_gradient(x, i, j, k, l, scratch)
        dihedral[t] = math.atan2(sin_phi, cos_phi) * deg if ok else 0.0
        largest = 0.0
        for a, b, c in ((i, j, k), (j, k, l)):
            dot = 0.0
            ua = 0.0
            uc = 0.0
            for d in range(3):
                first = x[a, d] - x[b, d]
                second = x[c, d] - x[b, d]
                dot += first * second
                ua += first * first
                uc += second * second
            cosine = dot / math.sqrt(ua * uc)
            cosine = min(1.0, max(-1.0, cosine))
            angle = math.acos(cosine) * deg
            if angle > largest:
                largest = angle
        largest_angle[t] = largest
    return dihedral, largest_angle


@numba.njit(cache=True, nogil=True)  # the worker keeps heartbeating meanwhile
def _relax_two_step(
    start,
    hydrogens,
    all_atoms,
    dihedrals,
    window_degrees,
    force_constant,
    straight_degrees,
    max_iterations,
    gradient_tolerance,
    isotropic,
    h_bonds,
    h_bond_params,
    h_angles,
    h_angle_params,
    h_angle_r0,
    h_oops,
    h_oop_params,
    h_torsions,
    h_torsion_params,
    h_pairs,
    h_pair_params,
    bonds,
    bond_params,
    angles,
    angle_params,
    angle_r0,
    oops,
    oop_params,
    torsions,
    torsion_params,
    pairs,
    pair_params,
):
    """The authors' two-step relaxation in one compiled call (see
    :func:`amondask.amons.geometry.relax_amon`): H atoms with ``h_*`` terms, then all atoms
    with the bent heavy dihedrals held in a flat-bottomed window. Returns (positions, largest
    dihedral change in degrees)."""
    x = start.copy()
    no_restraints = np.zeros((0, 4), dtype=np.int64)
    no_restraint_params = np.zeros((0, 3))
    _minimize(
        x, hydrogens, max_iterations, gradient_tolerance, isotropic, h_bonds, h_bond_params,
        h_angles, h_angle_params, h_angle_r0, h_oops, h_oop_params, h_torsions,
        h_torsion_params, h_pairs, h_pair_params, no_restraints, no_restraint_params,
    )  # fmt: skip
    before, largest_angle = dihedral_geometry(start, dihedrals)
    n_bent = 0
    for t in range(dihedrals.shape[0]):
        if largest_angle[t] <= straight_degrees:
            n_bent += 1
    held = np.empty((n_bent, 4), dtype=np.int64)
    window = np.empty((n_bent, 3))
    held_before = np.empty(n_bent)
    row = 0
    for t in range(dihedrals.shape[0]):
        if largest_angle[t] <= straight_degrees:
            for c in range(4):
                held[row, c] = dihedrals[t, c]
            held_before[row] = before[t]
            window[row, 0] = before[t] - window_degrees
            window[row, 1] = before[t] + window_degrees
            window[row, 2] = force_constant
            row += 1
    _minimize(
        x, all_atoms, max_iterations, gradient_tolerance, isotropic, bonds, bond_params,
        angles, angle_params, angle_r0, oops, oop_params, torsions, torsion_params, pairs,
        pair_params, held, window,
    )  # fmt: skip
    change = 0.0
    if n_bent:
        after, _ = dihedral_geometry(x, held)
        for t in range(n_bent):
            delta = abs((after[t] - held_before[t] + 180.0) % 360.0 - 180.0)
            if delta > change:
                change = delta
    return x, change


def relax_two_step(
    hydrogen_terms: MMFFTerms,
    terms: MMFFTerms,
    positions: np.ndarray,
    hydrogens: np.ndarray,
    all_atoms: np.ndarray,
    dihedrals: np.ndarray,
    *,
    window_degrees: float,
    force_constant: float,
    straight_degrees: float,
    max_iterations: int,
    gradient_tolerance: float = 1e-3,
) -> tuple[np.ndarray, float]:
    """MMFF94 on ``hydrogens`` (terms ``hydrogen_terms``, the others fixed), then on all atoms
    with the heavy ``dihedrals`` not over an angle above ``straight_degrees`` held within
    +-``window_degrees`` of their start values (restraint ``force_constant`` kcal/mol/deg^2).
    Returns (positions (n, 3) angstrom, largest change of a held dihedral in degrees)."""
    x, change = _relax_two_step(
        np.ascontiguousarray(positions, dtype=np.float64),
        hydrogens,
        all_atoms,
        dihedrals,
        float(window_degrees),
        float(force_constant),
        float(straight_degrees),
        int(max_iterations),
        float(gradient_tolerance),
        float(_ISOTROPIC_CURVATURE),
        *_term_arrays(hydrogen_terms),
        *_term_arrays(terms),
    )
    return x, float(change)


def _restraint_arrays(dihedrals: np.ndarray, window):
    if dihedrals is None or len(dihedrals) == 0:
        return np.zeros((0, 4), dtype=np.int64), np.zeros((0, 3))
    return np.ascontiguousarray(dihedrals, dtype=np.int64), np.ascontiguousarray(
        window, dtype=np.float64
    )


def energy_gradient(
    terms: MMFFTerms,
    positions: np.ndarray,
    restraints: np.ndarray | None = None,
    restraint_params: np.ndarray | None = None,
) -> tuple[float, np.ndarray]:
    """MMFF94 energy (kcal/mol) and gradient (n, 3; kcal/mol/A) at ``positions`` (angstrom).

    ``restraints`` (nr, 4) dihedrals with ``restraint_params`` (nr, 3) rows (lo, hi in degrees,
    absolute; force constant k in kcal/mol/deg^2, energy k excess^2) add flat-bottomed
    restraints, as RDKit's MMFF torsion constraints.
    """
    x = np.ascontiguousarray(positions, dtype=np.float64).copy()
    grad = np.empty_like(x)
    index, params = _restraint_arrays(restraints, restraint_params)
    energy = _energy_gradient(x, grad, *_term_arrays(terms), index, params)
    return float(energy), grad


def minimize(
    terms: MMFFTerms,
    positions: np.ndarray,
    free_atoms: np.ndarray,
    *,
    restraints: np.ndarray | None = None,
    restraint_params: np.ndarray | None = None,
    max_iterations: int = 2000,
    gradient_tolerance: float = 1e-3,
) -> tuple[np.ndarray, float, int, bool]:
    """Minimize the MMFF94 energy over ``free_atoms`` (the others stay fixed).

    Returns (positions (n, 3) angstrom, energy kcal/mol, iterations, converged).
    """
    x = np.ascontiguousarray(positions, dtype=np.float64).copy()
    index, params = _restraint_arrays(restraints, restraint_params)
    energy, iterations, _, converged = _minimize(
        x,
        np.ascontiguousarray(free_atoms, dtype=np.int64),
        int(max_iterations),
        float(gradient_tolerance),
        float(_ISOTROPIC_CURVATURE),
        *_term_arrays(terms),
        index,
        params,
    )
    return x, float(energy), int(iterations), bool(converged)


def _term_arrays(terms: MMFFTerms) -> tuple[np.ndarray, ...]:
    return (
        terms.bonds,
        terms.bond_params,
        terms.angles,
        terms.angle_params,
        terms.angle_bond_r0,
        terms.oops,
        terms.oop_params,
        terms.torsions,
        terms.torsion_params,
        terms.pairs,
        terms.pair_params,
    )
