"""Generation: logits -> next token, stop rules, and text streamed without splitting a character."""
