"""Look of the standard passenger plate of each US state and DC, as data.

Approximations of the current (or most common recent) issue, good enough that a model trained on
them learns the colour schemes, header and slogan lines and character layouts it will meet.
Colours are RGB hex (converted to BGR where used). Serial patterns use:

    D  a digit          L  a letter (serial letters skip I, O, Q as most states do)
    ' '  a gap          '-'  a dash         '*'  a small emblem between groups
    '#'  a picture between groups, as tall as the characters (`picture`: which one; empty: any)

The plate text (label) is the serial without gaps, dashes or emblems, as in the real crop labels.
`stacked` is the chance that the serial starts with two small characters stacked vertically
(county or class codes, e.g. Idaho's "6C" over/under, New Jersey's dealer "RM"); like the real crop
labels, the plate text leaves them out.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StateStyle:
    code: str  # lowercase two-letter code, as in the crop labels
    name: str  # header text
    slogan: str  # bottom line
    bg: tuple[str, ...]  # background gradient stops, top to bottom
    ink: str  # serial character colour
    header_ink: str
    header_font: str  # "bold" | "slab" | "script" | "italic"
    art: tuple[str, ...]  # art layers, see plates._paint_art
    art_ink: str
    formats: tuple[str, ...]
    slogan_ink: str | None = None  # None: same as header_ink
    stacked: float = 0.0
    dark: bool = False  # light characters on a dark plate
    picture: str = ""  # what '#' in a format draws (plates._PICTURES); empty: a random one


S = StateStyle

STATES: dict[str, StateStyle] = {
    s.code: s
    for s in [
        S("al", "Alabama", "Sweet Home Alabama", ("#ffffff", "#dfe9f5"), "#1b2f6b", "#b22234", "script",
          ("bottom_band",), "#2a4d9b", ("DLDDDDL", "DDLDDDD"), slogan_ink="#ffffff"),
        S("ak", "ALASKA", "THE LAST FRONTIER", ("#f7d842", "#f2c81e"), "#1c3f8f", "#1c3f8f", "bold",
          (), "#1c3f8f", ("LLL#DDD",), picture="flag"),
        S("az", "ARIZONA", "GRAND CANYON STATE", ("#f3e9c8", "#f0c27a", "#b9532e"), "#6b1d28", "#6b1d28", "bold",
          ("mountains", "sun"), "#8a3b22", ("LLLDDDD",)),
        S("ar", "Arkansas", "THE NATURAL STATE", ("#ffffff", "#f4f4f0"), "#153f7a", "#15803d", "slab",
          ("diamond",), "#c7dfc9", ("DDD LLL", "LLL DDD")),
        S("ca", "California", "dmv.ca.gov", ("#ffffff", "#f7f7f7"), "#1b2a6b", "#c8102e", "script",
          (), "#1b2a6b", ("DLLLDDD",), slogan_ink="#1b2a6b"),
        S("co", "COLORADO", "", ("#ffffff", "#ffffff", "#e7efe4"), "#0e5a2d", "#0e5a2d", "bold",
          ("mountains_top",), "#1d7a3e", ("LLL-DDD", "DDD-LLL"), slogan_ink="#0e5a2d"),
        S("ct", "Connecticut", "Constitution State", ("#d9e9f7", "#ffffff", "#eef5fb"), "#173a70", "#173a70",
          "italic", (), "#173a70", ("DDD LLL", "LL DDDDD")),
        S("de", "THE FIRST STATE", "DELAWARE", ("#17386f", "#17386f"), "#f3c94a", "#f3c94a", "bold",
          (), "#f3c94a", ("DDDDDD", "DDDDDDD"), dark=True),
        S("dc", "WASHINGTON, DC", "TAXATION WITHOUT REPRESENTATION", ("#ffffff", "#ffffff"), "#1b3a8c", "#c8102e",
          "bold", ("dc_flag",), "#c8102e", ("LL-DDDD",)),
        S("fl", "MYFLORIDA.COM", "Sunshine State", ("#ffffff", "#fbfbf5"), "#11603a", "#11603a", "bold",
          ("orange",), "#f28c1b", ("LLL DLL", "DDD LLL")),
        S("ga", "GEORGIA", "In God We Trust", ("#ffffff", "#fdf1e4"), "#1a1a40", "#1a1a40", "bold",
          ("peach",), "#f4a261", ("LLL DDDD",)),
        S("hi", "HAWAII", "ALOHA STATE", ("#ffffff", "#ffffff"), "#111111", "#111111", "bold",
          ("rainbow",), "#e63946", ("LLL DDD",)),
        S("id", "Scenic IDAHO", "FAMOUS POTATOES", ("#c92a2a", "#ffffff", "#5b8fd6"), "#15306b", "#ffffff", "slab",
          ("mountains", "trees"), "#2c4f8f", ("DL DDDDD", "DDDDDL"), stacked=0.3, slogan_ink="#15306b"),
        S("il", "Illinois", "Land of Lincoln", ("#ffffff", "#f5f7fb"), "#1b2a5a", "#c8102e", "script",
          ("skyline",), "#c9d3e6", ("LL DDDDD", "LLL DDDD"), slogan_ink="#1b2a5a"),
        S("in", "INDIANA", "IN GOD WE TRUST", ("#1f3f8f", "#ffffff", "#ffffff"), "#1b2a5a", "#ffffff", "bold",
          ("torch",), "#cfd8ea", ("DDDLLL", "DDDL")),
        S("ia", "IOWA", "", ("#ffffff", "#ffffff", "#d4e6f3"), "#1b2a5a", "#1b2a5a", "bold",
          ("hills",), "#5a8f3d", ("LLL DDD",)),
        S("ks", "KANSAS", "", ("#c6dcf2", "#ffffff"), "#1b2a5a", "#1b2a5a", "bold",
          ("hills",), "#d2a84a", ("DDD LLL", "LLL DDD")),
        S("ky", "Kentucky", "Unbridled Spirit", ("#ffffff", "#ffffff", "#e4ecf7"), "#1b2a5a", "#1b2a5a", "italic",
          ("bottom_band",), "#2b4f9e", ("DDD LLL",), slogan_ink="#ffffff"),
        S("la", "Louisiana", "Sportsman's Paradise", ("#ffffff", "#eef3fb"), "#1b2a5a", "#c8102e", "script",
          ("emblem",), "#8fa8d6", ("LLL DDD",), slogan_ink="#1b2a5a"),
        S("me", "MAINE", "Vacationland", ("#ffffff", "#f3f6ee"), "#111111", "#111111", "slab",
          ("pine",), "#355e3b", ("DDDD LL", "DDD LL")),
        S("md", "Maryland", "", ("#ffffff", "#f5f5f5"), "#111111", "#111111", "script",
          ("md_flag",), "#d4a017", ("DLL DDDD", "DLLDDDD")),
        S("ma", "Massachusetts", "The Spirit of America", ("#ffffff", "#ffffff"), "#b0142b", "#1b3a8c", "script",
          (), "#1b3a8c", ("DDD LLL", "DLL DDD", "DLLD DD")),
        S("mi", "Michigan", "Pure Michigan", ("#ffffff", "#e4ecf7"), "#1b2a5a", "#1b2a5a", "script",
          ("waves",), "#8fb1dd", ("LLL DDDD", "DLLLDD")),
        S("mn", "Minnesota", "10,000 lakes", ("#9cc3e6", "#ffffff", "#ffffff"), "#1b2a5a", "#1b2a5a", "script",
          ("waves",), "#3f7cc0", ("DDD LLL", "LLL DDD")),
        S("ms", "MISSISSIPPI", "", ("#ffffff", "#e8eef8"), "#1b2a5a", "#1b2a5a", "slab",
          ("emblem",), "#b8c9e6", ("LLL DDD", "LLL DDDD")),
        S("mo", "MISSOURI", "SHOW-ME STATE", ("#ffffff", "#eaf1fb", "#f3dede"), "#1b2a5a", "#1b2a5a", "bold",
          ("arch",), "#c8102e", ("LLD LDL", "LLD DDD")),
        S("mt", "MONTANA", "Big Sky", ("#6e98cd", "#e6eef8", "#ffffff"), "#1b2a5a", "#1b2a5a", "bold",
          ("mountains",), "#3d6aa3", ("D-DDDDDL", "DD-DDDDL")),
        S("ne", "NEBRASKA", "", ("#ffffff", "#eef2e0"), "#1b2a5a", "#1b2a5a", "bold",
          ("hills",), "#8ea35a", ("LLL DDD", "DD-LDDD")),
        S("nv", "NEVADA", "THE SILVER STATE", ("#e2ebf5", "#ffffff"), "#1b2a5a", "#1b2a5a", "bold",
          ("mountains",), "#9bb0cf", ("DDD LLL", "DDL DDD")),
        S("nh", "NEW HAMPSHIRE", "LIVE FREE OR DIE", ("#ffffff", "#e2f0e3"), "#155a35", "#155a35", "bold",
          ("mountains",), "#9ac7a1", ("DDD DDDD", "LLL DDD")),
        S("nj", "New Jersey", "Garden State", ("#f6e7a0", "#fbf3c8", "#f6e7a0"), "#111111", "#111111", "slab",
          (), "#111111", ("LDD-LLL", "LDDLLL")),
        S("nm", "NEW MEXICO", "LAND OF ENCHANTMENT", ("#fbe34b", "#fbe34b"), "#c8102e", "#c8102e", "bold",
          (), "#c8102e", ("LLL*DDD", "DDD*LLL")),
        S("ny", "NEW YORK", "EMPIRE STATE", ("#ffffff", "#ffffff"), "#1b2a5a", "#1b2a5a", "bold",
          ("top_band", "bottom_band"), "#2b4f9e", ("LLL-DDDD",), slogan_ink="#ffffff"),
        S("nc", "NORTH CAROLINA", "FIRST IN FLIGHT", ("#ffffff", "#f6f6f6"), "#1b2a5a", "#c8102e", "bold",
          ("fading_flag",), "#c8102e", ("LLL-DDDD",)),
        S("nd", "NORTH DAKOTA", "LEGENDARY", ("#f3e3c0", "#ffffff", "#c9dff2"), "#1b2a5a", "#1b2a5a", "bold",
          ("hills",), "#b99462", ("DDD LLL", "LLL DDD")),
        S("oh", "OHIO", "BIRTHPLACE OF AVIATION", ("#ffffff", "#f3f3f3"), "#1b2a5a", "#c8102e", "bold",
          ("fading_flag",), "#6fa8dc", ("LLL DDDD",)),
        S("ok", "OKLAHOMA", "Native America", ("#e9f1f8", "#ffffff"), "#1b6a80", "#1b2a5a", "slab",
          ("emblem",), "#7fa6c9", ("LLL-DDD", "DDD-LLL")),
        S("or", "OREGON", "", ("#ffffff", "#f7f3e9"), "#12406e", "#12406e", "bold",
          ("trees",), "#3b6e3b", ("DDD#LLL", "LLL#DDD"), picture="tree"),
        S("pa", "PENNSYLVANIA", "visitPA.com", ("#ffffff", "#ffffff"), "#13235b", "#ffffff", "bold",
          ("top_band", "bottom_band_yellow"), "#13235b", ("LLL-DDDD",), slogan_ink="#13235b"),
        S("ri", "RHODE ISLAND", "OCEAN STATE", ("#ffffff", "#e3eef8"), "#1b2a5a", "#1b2a5a", "bold",
          ("waves",), "#7fa6c9", ("LL-DDD", "DDD-DDD", "DDDDDD")),
        S("sc", "South Carolina", "TRAVEL2SC.COM", ("#f6c27a", "#f08a3c", "#d85b2a"), "#111111", "#111111",
          "script", ("tree",), "#1b1b1b", ("LLL DDD", "DLL DDD")),
        S("sd", "SOUTH DAKOTA", "GREAT FACES GREAT PLACES", ("#f2e6cf", "#ffffff"), "#1b2a5a", "#1b2a5a", "bold",
          ("hills",), "#c9b28a", ("DLL DDD", "DL DDDD")),
        S("tn", "TENNESSEE", "", ("#ffffff", "#e3eedd"), "#1b2a5a", "#1b2a5a", "bold",
          ("hills",), "#7ea36a", ("LLL-DDD", "DLL-LDD")),
        S("tx", "TEXAS", "THE LONE STAR STATE", ("#ffffff", "#f6f6f2"), "#111111", "#c8102e", "slab",
          ("skyline",), "#d8d3c8", ("LLL*DDDD", "LLL-DDDD"), slogan_ink="#111111"),
        S("ut", "UTAH", "LIFE ELEVATED", ("#c2dbef", "#f4d7b5", "#e9a36b"), "#1b2a5a", "#1b2a5a", "bold",
          ("arch",), "#b5542c", ("LDD LLL", "DLL DDD")),
        S("vt", "VERMONT", "GREEN MOUNTAIN STATE", ("#1d6b46", "#1d6b46"), "#ffffff", "#ffffff", "bold",
          (), "#ffffff", ("LLL DDD", "DLL DDD"), dark=True),
        S("va", "Virginia", "", ("#ffffff", "#ffffff"), "#1b2a5a", "#1b2a5a", "script",
          (), "#1b2a5a", ("LLL-DDDD", "LLLDDDD", "LLL DDD")),
        S("wa", "WASHINGTON", "", ("#ffffff", "#e6eef8"), "#1b2a5a", "#c8102e", "bold",
          ("mountains_faint",), "#aebfd9", ("LLLDDDD", "DDDLLL")),
        S("wv", "WEST VIRGINIA", "Wild, Wonderful", ("#1b2a5a", "#ffffff", "#ffffff", "#f3c94a"), "#1b2a5a",
          "#ffffff", "slab", (), "#1b2a5a", ("DLL DDD", "LLL DDD"), slogan_ink="#1b2a5a"),
        S("wi", "WISCONSIN", "AMERICA'S DAIRYLAND", ("#ffffff", "#e8eef4"), "#1b2a5a", "#1b2a5a", "bold",
          ("waves",), "#bcd0e6", ("LLL-DDDD", "DDD-LLL")),
        S("wy", "WYOMING", "", ("#e9e4da", "#ffffff", "#f0e8d8"), "#1b2a5a", "#1b2a5a", "slab",
          ("horse",), "#8a5a2b", ("D*DDDDD", "DD*DDDD", "DD*DDDL"), stacked=0.0),
    ]
}

ALL_STATES: tuple[str, ...] = tuple(sorted(STATES))
