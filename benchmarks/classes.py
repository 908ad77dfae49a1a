"""The ImageNet classes every quality benchmark uses: 16 spread across the 1000 (animals, objects, food, scenes)."""

CLASSES = [
    1,    # goldfish
    9,    # ostrich
    22,   # bald eagle
    107,  # jellyfish
    130,  # flamingo
    207,  # golden retriever
    291,  # lion
    323,  # monarch butterfly
    388,  # giant panda
    417,  # balloon
    483,  # castle
    511,  # convertible
    779,  # school bus
    937,  # broccoli
    963,  # pizza
    980,  # volcano
]
