"""Retrieval: product embeddings, the FAISS index, and personalized candidates (importing this loads nothing).

    embedder.py     product_text, embed_texts, EmbeddingCache, embed_products (all-MiniLM-L6-v2, offline)
    index.py        ProductIndex: build / search / add / update / remove / sync / save / load
    recommender.py  Recommender(index, interactions, cfg, dataset=).recommend(history, user_id=, text=, filters=, k=)
                    -> [Recommendation(product, score, similarity, popularity, copurchase, reasons)]
    stages.py       `recnarr index`
"""
