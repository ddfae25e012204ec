"""Write the microheterogeneity fixtures from a real deposited entry (run once; the
outputs are committed beside this script).

Source: PDB entry 1YJP (X-ray, 1.8 A, the GNNQQNY peptide), the mmCIF file shipped
by the MDAnalysisTests package (MDAnalysisTests/data/mmcif/1YJP.cif), unchanged
except for one edit: residue A 3 becomes a microheterogeneous position as in 1EJG
(PRO/SER at 22): the deposited ASN keeps its coordinates as alt-loc A at occupancy
0.60, and a SER variant is added as alt-loc B at occupancy 0.40 (N, CA, C, O, CB
at the ASN atoms' positions, OG at CG's). 66 + 6 = 72 atoms.

    1yjp_microheterogeneity.cif   the edited mmCIF
    1yjp_microheterogeneity.pdb   the same atoms in PDB format (wwPDB v3.3 columns)

    python tests/data/structures/make_fixtures.py
"""
from pathlib import Path

from equivox.demo_data import mdanalysis_data_dir

HERE = Path(__file__).resolve().parent
SER_FROM_ASN = {"N": "N", "CA": "CA", "C": "C", "O": "O", "CB": "CB", "OG": "CG"}


def edited_rows(lines: list[str]) -> list[str]:
    """atom_site rows of 1YJP with residue A 3 split into ASN (A) and SER (B)."""
    out, asn = [], {}
    for line in lines:
        t = line.split()
        if t[5] == "ASN" and t[8] == "3":
            t[4], t[13] = "A", "0.60"
            asn[t[3]] = t
        elif asn and len(asn) == 8 and not any(r[5] == "SER" for r in out):
            for name, source in SER_FROM_ASN.items():  # the variant follows the deposited one
                s = list(asn[source])
                s[2], s[3], s[4], s[5], s[13] = name[0], name, "B", "SER", "0.40"
                s[17], s[19] = "SER", name  # auth_comp_id, auth_atom_id
                out.append(s)
        out.append(t)
    for serial, t in enumerate(out, start=1):
        t[1] = str(serial)
    return [" ".join(t) for t in out]


def pdb_line(t: list[str]) -> str:
    name, element = t[3], t[2]
    padded = f" {name:<3}" if len(name) < 4 and len(element) == 1 else f"{name:<4}"
    return (f"{t[0]:<6}{int(t[1]):>5} {padded}{'' if t[4] == '.' else t[4]:1}{t[5]:>3} {t[18]:1}"
            f"{int(t[16]):>4}{'' if t[9] == '?' else t[9]:1}   {float(t[10]):8.3f}{float(t[11]):8.3f}"
            f"{float(t[12]):8.3f}{float(t[13]):6.2f}{float(t[14]):6.2f}          {element:>2}")


def main():
    text = (mdanalysis_data_dir() / "mmcif/1YJP.cif").read_text().splitlines()
    first = next(i for i, line in enumerate(text) if line.startswith(("ATOM", "HETATM")))
    last = max(i for i, line in enumerate(text) if line.startswith(("ATOM", "HETATM")))
    rows = edited_rows(text[first:last + 1])
    note = ["# equivox test fixture: PDB entry 1YJP as shipped by MDAnalysisTests",
            "# (data/mmcif/1YJP.cif), residue A 3 made microheterogeneous (ASN alt A 0.60,",
            "# SER alt B 0.40) as in 1EJG; see tests/data/structures/make_fixtures.py"]
    cif = text[:1] + note + text[1:first] + rows + text[last + 1:]
    (HERE / "1yjp_microheterogeneity.cif").write_text("\n".join(cif) + "\n")
    pdb = ["HEADER    AMYLOID                                 08-MAR-05   1YJP              ",
           "REMARK 999 EQUIVOX TEST FIXTURE: 1YJP FROM MDANALYSISTESTS DATA/MMCIF/1YJP.CIF,",
           "REMARK 999 RESIDUE A 3 MADE MICROHETEROGENEOUS (ASN ALT A 0.60, SER ALT B 0.40)",
           "REMARK 999 AS IN 1EJG; SEE TESTS/DATA/STRUCTURES/MAKE_FIXTURES.PY",
           "EXPDTA    X-RAY DIFFRACTION                                                     "]
    pdb += [pdb_line(line.split()) for line in rows] + ["END"]
    (HERE / "1yjp_microheterogeneity.pdb").write_text("\n".join(pdb) + "\n")


if __name__ == "__main__":
    main()
