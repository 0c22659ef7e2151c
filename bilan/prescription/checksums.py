"""Check keys of French and international identifiers."""


def luhn_valid(digits: str) -> bool:
    """Luhn (mod 10) check over a string of digits whose last digit is the key."""
    if not digits.isdigit():
        return False
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def nir_key(nir13: str) -> int:
    """The 2-digit key of a 13-character NIR: 97 - (NIR mod 97); Corsica 2A -> 19, 2B -> 18."""
    numeric = nir13.upper().replace("2A", "19", 1) if nir13[5:7].upper() == "2A" else nir13
    numeric = numeric.upper().replace("2B", "18", 1) if nir13[5:7].upper() == "2B" else numeric
    return 97 - int(numeric) % 97
