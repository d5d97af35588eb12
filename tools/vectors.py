"""Write tests/vectors/protocol.json: every example, untagged and tagged with
the test key, as the exact frame bytes. Run only when the wire format is
changed on purpose (the tests pin these bytes):

    python -m tools.vectors
"""

import json
import pathlib

from protocol import hmac256, jsonform, messages
from protocol.examples import EXAMPLES, TEST_KEY

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "vectors" / "protocol.json"


def build():
    key = hmac256.Key(TEST_KEY)
    vectors = []
    for i, ex in enumerate(EXAMPLES):
        for k in (None, key):
            vectors.append({
                "name": "%02d-%s-%s" % (i, ex["type"], "tagged" if k else "plain"),
                "key": k is not None,
                "message": jsonform.to_json(ex),
                "frame": messages.encode(ex, k).hex(),
            })
    return vectors


if __name__ == "__main__":
    OUT.write_text(json.dumps(build(), indent=1, ensure_ascii=False) + "\n")
    print("wrote", OUT)
