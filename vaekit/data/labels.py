"""The one rule that turns an image folder's subfolder names into class labels, used by the
training cache (cache.assign) and by the inputs of encode/score/explore (inputs.folder).

Paths are relative, "/"-separated, as cache.list_images gives them. A tree with train/ and test/
at the top (every image below one of them) is split by folder: the classes are then the
subfolders below the split. Images are labelled by the first subfolder (classes sorted by name,
numbered from 0) when every image sits in one; otherwise (some at the top) there are no classes
and every label is 0.
"""

from __future__ import annotations

SPLITS = ("train", "test")


def split_by_folder(rels: list[str]) -> bool:
    """Whether the tree holds train/ and test/ at the top, with every image below a folder."""
    return set(SPLITS) <= {r.split("/")[0] for r in rels} and all("/" in r for r in rels)


def folder_labels(rels: list[str]) -> tuple[list[int], list[str]]:
    """(label per path, class names): label i names classes[i]; no classes (labels all 0) when
    some image is not in a class folder."""
    inner = [r.split("/", 1)[1] for r in rels] if split_by_folder(rels) else rels
    if not inner or not all("/" in r for r in inner):
        return [0] * len(rels), []
    classes = sorted({r.split("/")[0] for r in inner})
    index = {c: i for i, c in enumerate(classes)}
    return [index[r.split("/")[0]] for r in inner], classes
