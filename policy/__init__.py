"""keel's policy pack (CrossGuard): the house rules, enforced on every preview and update."""
