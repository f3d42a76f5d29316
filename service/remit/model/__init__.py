"""The model: facts, conditions, the compiled rule table's types and loader, requests, errors.

Every other stage depends on this one; it depends on none of them."""
