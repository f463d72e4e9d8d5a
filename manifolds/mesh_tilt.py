"""Per-face tables of the flux-continuous tangent projection on meshes: edge bisectors, the tilt field, vertex normals.

:meth:`manifolds.Mesh.proju` maps ``u`` to ``u - <n, u> n + <n, u> tau(x)``: the orthogonal
projection onto the face plane plus the normal component times a tilt field ``tau``, linear inside
each face (``tau(x) = C x - q``). On the edge opposite corner ``k`` the result's outward normal
component is ``<u, nu_k + t_k n>``, and ``nu_k + t_k n`` is perpendicular to the bisector ``m_k``
of the two faces' normals: the same vector, with opposite sign, from either face, so the normal
flux of every projected field is continuous across edges. The functions here build ``C``, ``q``
and the area-weighted vertex normals from the host arrays of a mesh.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np


def edge_bisectors(faces: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Unit bisectors ``[faces, 3, 3]`` of the two faces' normals at the edge opposite each corner.

    On a boundary edge the bisector is the face's own normal.

    Args:
        faces: triangles ``[m, 3]``.
        normals: unit face normals ``[m, 3]``.
    """
    m = len(faces)
    half = np.stack([faces[:, [1, 2]], faces[:, [2, 0]], faces[:, [0, 1]]], 1).reshape(-1, 2)  # opposite corner k
    _, edge_id = np.unique(np.sort(half, 1), axis=0, return_inverse=True)
    edge_id = edge_id.ravel()
    owner = np.repeat(np.arange(m), 3)
    order = np.argsort(edge_id, kind="stable")
    other = owner.copy()
    sorted_ids = edge_id[order]
    pair = np.nonzero(sorted_ids[1:] == sorted_ids[:-1])[0]
    other[order[pair]] = owner[order[pair + 1]]
    other[order[pair + 1]] = owner[order[pair]]
    bis = normals[owner] + normals[other]
    bis /= np.linalg.norm(bis, axis=1, keepdims=True).clip(1e-300)
    return bis.reshape(m, 3, 3)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray, areas: np.ndarray) -> np.ndarray:
    """``[vertices, 3]`` unit vertex normals: the area-weighted mean of the normals of the faces around each vertex."""
    acc = np.zeros_like(vertices)
    weighted = normals * areas[:, None]
    for k in range(3):
        np.add.at(acc, faces[:, k], weighted)
    return acc / np.linalg.norm(acc, axis=1, keepdims=True).clip(1e-300)


def tilt_field(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray,
               areas: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Per-face ``(C [faces], q [faces, 3])`` of the tilt field ``tau(x) = C x - q``.

    ``tau`` is the lowest-order Raviart-Thomas field of the face whose normal component on the
    edge opposite corner ``k`` is ``t_k = -<nu_k, m_k> / <n, m_k>`` (``nu_k`` the edge's outward
    normal in the face plane, ``m_k`` the bisector of the normals of the faces that share the
    edge): ``tau = sum_k t_k l_k / (2 A) (x - p_k)``, with ``l_k`` the edge length, ``A`` the face
    area and ``p_k`` the corner. Its divergence inside a face is the constant ``2 C``.
    """
    bis = edge_bisectors(faces, normals)
    P = vertices[faces]  # [m, 3 corners, 3]
    C = np.zeros(len(faces))
    q = np.zeros((len(faces), 3))
    for k in range(3):
        pk, pi, pj = P[:, k], P[:, (k + 1) % 3], P[:, (k + 2) % 3]
        e = pj - pi
        length = np.linalg.norm(e, axis=1)
        nu = np.cross(e / length[:, None], normals)
        nu *= np.sign((nu * (pi - pk)).sum(1))[:, None]  # outward: away from the opposite corner
        m = bis[:, k]
        t = -(nu * m).sum(1) / (normals * m).sum(1).clip(1e-12)
        c = t * length / (2.0 * areas)
        C += c
        q += c[:, None] * pk
    return C, q


def face_gradient_basis(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray, areas: np.ndarray) -> np.ndarray:
    """Gradients of the three barycentric (hat) functions on each face, ``[faces, 3, 3]`` (face, vertex, xyz)."""
    a, b, c = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    twice = (2 * areas)[:, None]
    return np.stack([np.cross(normals, c - b) / twice, np.cross(normals, a - c) / twice,
                     np.cross(normals, b - a) / twice], 1)
