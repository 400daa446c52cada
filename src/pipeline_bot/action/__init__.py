"""Front end 1: the GitHub Action. Runner environment in; outputs, summary, annotations out."""
