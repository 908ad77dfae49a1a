"""The ImageNet classes every rendering / generator-prior benchmark uses (16, spread across ImageNet).

Chosen to span fish, birds, mammals, insects, objects, vehicles, food and
scenes, each a class Lite0 recognizes well on photos.
"""

CLASSES = [1, 9, 22, 130, 207, 281, 291, 323, 388, 417, 511, 717, 850, 948, 963, 980]
# goldfish, ostrich, bald eagle, flamingo, golden retriever, tabby, lion, monarch,
# giant panda, balloon, convertible, pickup, teddy, Granny Smith, pizza, volcano
