"""The categories of ADE20K's panoptic and instance tasks (Mask2Former's conventions).

Dataset ids are the SceneParsing class ids shifted to 0-based, ``0..149`` (the stored semantic
value minus one), names are detectron2's ``ADE20K_SEM_SEG_CATEGORIES``. 100 of the 150 classes
are things: those of the instance annotations release, whose ``annotations_instance/*.png`` store
instance class ``k`` (1..100) in the red channel; instance class ``k`` is the ``k``-th thing id
in increasing order (:data:`ADE20K_THING_IDS`).
"""

from typing import Dict, List, Tuple

from detectron2.data.datasets.builtin_meta import ADE20K_SEM_SEG_CATEGORIES

__all__ = [
    "ADE20K_COLORS",
    "ADE20K_INSTANCE_NAMES",
    "ADE20K_THING_IDS",
    "ade20k_instance_categories",
    "ade20k_panoptic_categories",
]

# Dataset ids (0-based) of the 100 thing classes; instance class k (1-based) is entry k - 1.
ADE20K_THING_IDS: Tuple[int, ...] = tuple(int(word) for word in """
    7 8 10 12 14 15 18 19 20 22 23 24 27 30 31 32 33 35 36 37 38 39 41 42 43 44 45 47 49 50 53 55
    56 57 58 62 64 65 66 67 69 70 71 72 73 74 75 76 78 80 81 82 83 85 86 87 88 89 90 92 93 95 97 98
    102 103 104 107 108 110 111 112 115 116 118 119 120 121 123 124 125 126 127 129 130 132 133 134
    135 136 137 138 139 142 143 144 146 147 148 149
    """.split())

# The short names the instance task gives its 100 classes, in the order of ADE20K_THING_IDS.
ADE20K_INSTANCE_NAMES: Tuple[str, ...] = tuple(name.strip() for name in """
    bed, windowpane, cabinet, person, door, table, curtain, chair, car, painting, sofa, shelf,
    mirror, armchair, seat, fence, desk, wardrobe, lamp, bathtub, railing, cushion, box, column,
    signboard, chest of drawers, counter, sink, fireplace, refrigerator, stairs, case, pool table,
    pillow, screen door, bookcase, coffee table, toilet, flower, book, bench, countertop, stove,
    palm, kitchen island, computer, swivel chair, boat, arcade machine, bus, towel, light, truck,
    chandelier, awning, streetlight, booth, television receiver, airplane, apparel, pole,
    bannister, ottoman, bottle, van, ship, fountain, washer, plaything, stool, barrel, basket, bag,
    minibike, oven, ball, food, step, trade name, microwave, pot, animal, bicycle, dishwasher,
    screen, sculpture, hood, sconce, vase, traffic light, tray, ashcan, fan, plate, monitor,
    bulletin board, radiator, glass, clock, flag
    """.split(","))

# RGB colour of each of the 150 classes (by dataset id), as hex triplets.
_COLOR_HEX = """
787878 b47878 06e6e6 503232 04c803 787850 8c8c8c cc05ff e6e6e6 04fa07 e005ff ebff07 96053d
787846 08ff33 ff0652 8fff8c ccff04 ff3307 cc4603 0066c8 3de6fa ff0633 0b66ff ff0747 ff09e0
0907e6 dcdcdc ff095c 7009ff 08ffd6 07ffe0 ffb806 0aff47 ff290a 07ffff e0ff08 6608ff ff3d06
ffc207 ff7a08 00ff14 ff0829 ff0599 0633ff eb0cff a09614 00a3ff 8c8c8c fa0a0f 14ff00 1fff00
ff1f00 ffe000 99ff00 0000ff ff4700 00ebff 00adff 1f00ff 0bc8c8 ff5200 00fff5 003dff 00ff70
00ff85 ff0000 ffa300 ff6600 c2ff00 008fff 33ff00 0052ff 00ff29 00ffad 0a00ff adff00 00ff99
ff5c00 ff00ff ff00f5 ff0066 ffad00 ff0014 ffb8b8 001fff 00ff3d 0047ff ff00cc 00ffc2 00ff52
000aff 0070ff 3300ff 00c2ff 007aff 00ffa3 ff9900 00ff0a ff7000 8fff00 5200ff a3ff00 ffeb00
08b8aa 8500ff 00ff5c b800ff ff001f 00b8ff 00d6ff ff0070 5cff00 00e0ff 70e0ff 46b8a0 a300ff
9900ff 47ff00 ff00a3 ffcc00 ff008f 00ffeb 85ff00 ff00eb f500ff ff007a fff500 0abed4 d6ff00
00ccff 1400ff ffff00 0099ff 0029ff 00ffcc 2900ff 29ff00 ad00ff 00f5ff 4700ff 7a00ff 00ffb8
005cff b8ff00 0085ff ffd600 19c2c2 66ff00 5c00ff
"""
ADE20K_COLORS: Tuple[Tuple[int, int, int], ...] = tuple(
    (int(code[0:2], 16), int(code[2:4], 16), int(code[4:6], 16)) for code in _COLOR_HEX.split()
)


def ade20k_panoptic_categories() -> List[Dict]:
    """The 150 panoptic categories, COCO-style (``id``, ``name``, ``isthing``, ``color``),
    by dataset id."""
    things = set(ADE20K_THING_IDS)
    return [
        {"id": index, "name": name, "isthing": int(index in things), "color": list(color)}
        for index, (name, color) in enumerate(zip(ADE20K_SEM_SEG_CATEGORIES, ADE20K_COLORS))
    ]


def ade20k_instance_categories() -> List[Dict]:
    """The 100 instance categories, COCO-style (``id``, ``name``), by dataset id."""
    return [{"id": i, "name": name} for i, name in zip(ADE20K_THING_IDS, ADE20K_INSTANCE_NAMES)]
