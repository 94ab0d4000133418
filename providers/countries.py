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


# Every ISO 3166-1 alpha-2 code (249), as tzdata's iso3166.tab lists them (current as of
# ISO/TC 46 N1108, 2023-04-05): "ZZ", "EU" or "UK" (the code is GB) are not a country a
# verdict can be read from.
ISO_3166_ALPHA2: frozenset[str] = frozenset(
    {
        "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT",
        "AU", "AW", "AX", "AZ", "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI",
        "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS", "BT", "BV", "BW", "BY",
        "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
        "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM",
        "DO", "DZ", "EC", "EE", "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK",
        "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF", "GG", "GH", "GI", "GL",
        "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
        "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR",
        "IS", "IT", "JE", "JM", "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN",
        "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC", "LI", "LK", "LR", "LS",
        "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
        "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW",
        "MX", "MY", "MZ", "NA", "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP",
        "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG", "PH", "PK", "PL", "PM",
        "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
        "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM",
        "SN", "SO", "SR", "SS", "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF",
        "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO", "TR", "TT", "TV", "TW",
        "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
        "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
    }
)  # fmt: skip


def is_country(code: str) -> bool:
    """Whether `code` is an ISO 3166-1 alpha-2 country code (any case)."""
    return code.strip().upper() in ISO_3166_ALPHA2


def in_eu_eea(code: str) -> bool:
    """True when the ISO 3166-1 alpha-2 code is an EU member state or in the EEA."""
    return code.upper() in EU_EEA


def country_name(code: str) -> str:
    return COUNTRY_NAMES.get(code.upper(), code.upper())
