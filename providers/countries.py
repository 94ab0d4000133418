"""Countries as the catalog and the policies read them: the EU/EEA list and display names.
Kept apart from the catalog so that the policies' names are known without loading it."""

from __future__ import annotations

# The one EU/EEA list: the 27 EU member states plus Iceland, Liechtenstein and Norway.
# Switzerland (EFTA, not EEA) and the United Kingdom are outside it.
EU_EEA: frozenset[str] = frozenset(
    {
        "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE",
        "IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
        "IS", "LI", "NO",
    }
)  # fmt: skip

# Names for the codes the catalog uses, so reasons read "Microsoft Corporation (United States)".
COUNTRY_NAMES: dict[str, str] = {
    "AT": "Austria", "AU": "Australia", "BE": "Belgium", "BG": "Bulgaria", "CA": "Canada",
    "CH": "Switzerland", "CN": "China", "CZ": "Czechia", "DE": "Germany", "DK": "Denmark",
    "ES": "Spain", "FI": "Finland", "FR": "France", "GB": "United Kingdom", "IE": "Ireland",
    "IN": "India", "IS": "Iceland", "IT": "Italy", "JP": "Japan", "LI": "Liechtenstein",
    "LU": "Luxembourg", "MX": "Mexico", "NL": "Netherlands", "NO": "Norway", "PL": "Poland",
    "PT": "Portugal", "SE": "Sweden", "SG": "Singapore", "US": "United States",
}  # fmt: skip


def in_eu_eea(code: str) -> bool:
    """True when the ISO 3166-1 alpha-2 code is an EU member state or in the EEA."""
    return code.upper() in EU_EEA


def country_name(code: str) -> str:
    return COUNTRY_NAMES.get(code.upper(), code.upper())
