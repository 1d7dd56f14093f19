"""On-premise, cloud and DIY side by side: the table lab 01 asks the learner to fill in.

The note's words: **on-premise** is "자체적으로 보유한 전산실 서버에 직접 설치해 운영하는 방식"
(installed and run on servers in one's own machine room); **DIY** is "IaaS 사용하는 방식,
스스로 직접" (using IaaS, doing the rest oneself); a **managed cloud service** (PaaS,
SaaS) leaves even the OS to the provider.
"""

WAYS = ("on-premise", "diy-iaas", "managed")
# statement -> the true answer for each way (True: it holds)
ROWS = {
    "you buy the hardware before you use it": {"on-premise": True, "diy-iaas": False, "managed": False},
    "you pay for what you use, metered": {"on-premise": False, "diy-iaas": True, "managed": True},
    "a new server or instance in minutes, by self-service": {"on-premise": False, "diy-iaas": True,
                                                             "managed": True},
    "you install and patch the operating system": {"on-premise": True, "diy-iaas": True, "managed": False},
    "the machines stand in your own building": {"on-premise": True, "diy-iaas": False, "managed": False},
}


def comparison_template():
    """The empty table: ``{statement: {way: None}}``; put True or False in each cell."""
    return {row: {way: None for way in WAYS} for row in ROWS}


def wrong_cells(answer):
    """The ``(statement, way)`` cells of ``answer`` that are not the true answer (all of them when unreadable)."""
    wrong = []
    for row, truth in ROWS.items():
        given = answer.get(row) if isinstance(answer, dict) else None
        for way in WAYS:
            value = given.get(way) if isinstance(given, dict) else None
            if not isinstance(value, bool) or value != truth[way]:
                wrong.append((row, way))
    return wrong
