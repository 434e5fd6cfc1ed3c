"""Word material for the data-to-text writer: what a kind of product is for, and which kinds go together.

Plain data. Keyed by the last element of a product's category path (Superstore sub-categories,
MovieLens genres), and valid only on the path it was written for (`HOME`): a fashion shop's
"Women > Accessories" is not Superstore's "Technology > Accessories", and "makes the everyday computer
work smoother" would be a lie about a scarf. Anything else falls back to the product's own description.
Phrases never name another category, so a narrative stays true of the product it is said of. They
say what a kind of product is for, never what it is ("is a ... sheet") nor how good it is ("built to
last"): those would be kind and quality claims no record backs (the audit in `evaluation/audit.py`
flagged them).
"""

PURPOSE: dict[str, list[str]] = {
    # Superstore sub-categories
    "Accessories": ["rounds out a desk setup", "makes the everyday computer work smoother",
                    "keeps the tools you use daily within reach"],
    "Appliances": ["keeps the office running comfortably", "takes care of a daily chore for you",
                   "helps at work or at home"],
    "Art": ["suits sketching, marking and note-taking", "keeps your desk drawer ready for ideas",
            "suits drawing and writing alike"],
    "Binders": ["keeps reports and handouts organized", "turns loose pages into a tidy presentation",
                "holds documents together for meetings and archives"],
    "Bookcases": ["gives books and files a proper home", "adds shelf space without crowding the room",
                  "brings order to a home office or a reception area"],
    "Chairs": ["keeps you comfortable through long working days", "suits long hours at the desk",
               "supports the way you sit and work"],
    "Copiers": ["handles copying for a busy office", "keeps documents moving in the office",
                "takes on high-volume copy jobs"],
    "Envelopes": ["gets your mail out looking professional", "protects what you send",
                  "keeps your mailings neat and consistent"],
    "Fasteners": ["keeps loose pages together", "holds notes and pages in place",
                  "keeps a desk tidy"],
    "Furnishings": ["finishes the look of a workspace", "adds a practical touch to the office",
                    "makes a room feel organized"],
    "Labels": ["makes filing and mailing faster", "keeps folders and shelves easy to read",
               "helps you find things at a glance"],
    "Machines": ["takes on the heavy lifting for office documents", "saves time on everyday office jobs",
                 "brings more capability to your workspace"],
    "Paper": ["is ready for everyday printing and copying", "keeps the printer stocked",
              "suits printing and copying alike"],
    "Phones": ["keeps you connected on the go", "makes calls and messages easier",
               "keeps you reachable wherever you work"],
    "Storage": ["gives files and odds and ends a place of their own", "keeps clutter off the desk",
                "makes stored things easy to find"],
    "Supplies": ["keeps the desk drawer ready", "handles the small jobs every office has",
                 "handles everyday desk jobs"],
    "Tables": ["gives meetings and projects room to spread out", "anchors a workspace",
               "makes room for work and meetings"],
    # MovieLens genres
    "Action": ["keeps the pace high from start to finish", "is built around big set pieces"],
    "Adventure": ["takes you somewhere new", "goes on a journey"],
    "Animation": ["suits the whole family", "shows what animation can do"],
    "Children's": ["suits watching with the kids", "works for young and old viewers alike"],
    "Comedy": ["is good for a laugh", "keeps the mood light"],
    "Crime": ["keeps you guessing", "is full of tension and twists"],
    "Documentary": ["tells a true story well", "opens a window on the real world"],
    "Drama": ["is driven by its characters", "stays with you after the credits"],
    "Fantasy": ["builds a world of its own", "lets the imagination run"],
    "Film-Noir": ["is moody and sharp", "is full of shadows and sharp dialogue"],
    "Horror": ["suits a night with the lights off", "delivers the chills"],
    "Musical": ["is carried by its songs", "puts the music first"],
    "Mystery": ["keeps you guessing until the end", "rewards close attention"],
    "Romance": ["suits a cozy evening", "has heart to spare"],
    "Sci-Fi": ["imagines another world", "asks big what-if questions"],
    "Thriller": ["keeps you on the edge of your seat", "builds tension scene by scene"],
    "War": ["looks hard at conflict and courage", "tells a story of courage under fire"],
    "Western": ["rides out on the open frontier", "tells a frontier story"],
}

# what one product of a leaf is, as a noun phrase ("Xerox 1883" in Paper: "paper product"): said only
# when the title names no kind of its own (`claims.kind_phrase`); on the lexicon's own paths only
NOUNS: dict[str, str] = {
    "Accessories": "computer accessory", "Appliances": "appliance", "Art": "art supply", "Binders": "binder",
    "Bookcases": "bookcase", "Chairs": "chair", "Copiers": "copier", "Envelopes": "envelope product",
    "Fasteners": "fastener product", "Furnishings": "office furnishing", "Labels": "label product", "Machines": "office machine",
    "Paper": "paper product", "Phones": "phone", "Storage": "storage piece", "Supplies": "office supply",
    "Tables": "table",
}
# a film genre as the noun a sentence names it by ("a comedy", "a crime film")
GENRE_NOUNS: dict[str, str] = {
    "Action": "action film", "Adventure": "adventure film", "Animation": "animated film",
    "Children's": "children's film", "Comedy": "comedy", "Crime": "crime film", "Documentary": "documentary",
    "Drama": "drama", "Fantasy": "fantasy film", "Film-Noir": "film noir", "Horror": "horror film",
    "Musical": "musical", "Mystery": "mystery", "Romance": "romance", "Sci-Fi": "sci-fi film",
    "Thriller": "thriller", "War": "war film", "Western": "western",
}

# kinds that complete each other (either direction)
COMPLEMENTS: set[frozenset[str]] = {
    frozenset(p)
    for p in [
        ("Binders", "Paper"), ("Binders", "Labels"), ("Binders", "Fasteners"), ("Paper", "Envelopes"),
        ("Labels", "Envelopes"), ("Paper", "Machines"), ("Paper", "Copiers"), ("Art", "Paper"),
        ("Chairs", "Tables"), ("Chairs", "Furnishings"), ("Tables", "Furnishings"), ("Bookcases", "Storage"),
        ("Bookcases", "Furnishings"), ("Storage", "Labels"), ("Phones", "Accessories"),
        ("Machines", "Accessories"), ("Supplies", "Fasteners"), ("Supplies", "Art"), ("Appliances", "Furnishings"),
        ("Action", "Adventure"), ("Action", "Thriller"), ("Animation", "Children's"), ("Comedy", "Romance"),
        ("Crime", "Thriller"), ("Crime", "Film-Noir"), ("Mystery", "Thriller"), ("Sci-Fi", "Fantasy"),
        ("Drama", "Romance"), ("Horror", "Thriller"), ("Adventure", "Fantasy"), ("War", "Drama"),
    ]
}

# the top-level category each entry was written under (Superstore's paths, MovieLens' ["Movies", genre])
HOME: dict[str, str] = {
    **dict.fromkeys(("Bookcases", "Chairs", "Furnishings", "Tables"), "Furniture"),
    **dict.fromkeys(("Appliances", "Art", "Binders", "Envelopes", "Fasteners", "Labels", "Paper", "Storage",
                     "Supplies"), "Office Supplies"),
    **dict.fromkeys(("Accessories", "Copiers", "Machines", "Phones"), "Technology"),
    **dict.fromkeys(("Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
                     "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War",
                     "Western"), "Movies"),
}


def lexicon_leaf(category: list[str]) -> str | None:
    """The leaf the lexicon may speak of: only on the exact path its entries were written for."""
    return category[-1] if len(category) == 2 and HOME.get(category[-1]) == category[0] else None
