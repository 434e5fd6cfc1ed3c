"""The connective vocabulary: every word a narrative may use outside a slot.

Closed and catalog-independent. These words carry tone, glue sentences together and ask for the
order; none of them states something a record could contradict. Left out on purpose, because each
would be a claim no slot backs: product kinds and parts ("keyboard", "binder", "desk"), colours and
materials, popularity and frequency ("best-selling", "many", "customers", "often", "every", "week"),
relations ("same", "different", "pairs", "match", "together", "more", "new"), events ("bought",
"ordered", "rated", "watched"), time ("month", "year", "since", "ago"), quantities and numbers.
Those reach a narrative only as slots filled from the record (`data.claims`).

Lower case; the verifier compares case-insensitively. Add a word only if no record could make it false.
"""

from __future__ import annotations

_WORDS = """
a an the this that these those it it's its one
you your you're you'll yours we we've we'd we're our us
and or but so as if then also just
is are be been was were will would can could
to for of in on at with from by into about off down instead than
here there when
hi hello dear
good great fine lovely nice
news
found find think thinks like love enjoy hope
made make makes us
something special
pick picks choice suggestion recommendation recommend recommended suggest
considered allow delighted
look take try give add adding include included
next list order orders cart basket
ready worth worthy addition
meet have here's
now right save saving comes come costs priced price yours
came out release released
know
which like
catalog's words description says
today fit enjoy
"""

VOCABULARY: frozenset[str] = frozenset(_WORDS.split())
# asking for an order says the product is for sale: only where the record has a price (not of a film
# in a catalog of ratings), checked by `data.claims.check`
ORDER_WORDS: frozenset[str] = frozenset({"order", "orders", "cart", "basket"})
