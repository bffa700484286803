"""
``market-seller``: the interactive seller client.

    market-seller --server tcp:127.0.0.1:7010
"""

from marketplace.market.cli import views
from marketplace.market.cli.shell import (
    Arg,
    ClientOptions,
    Command,
    Rest,
    money,
    run,
    whole_number,
)

COMMANDS = [
    Command("create-account", "CreateAccount", "create a seller account",
            (Arg("username", "USERNAME"), Arg("password", "PASSWORD"))),
    Command("login", "Login", "log in; later commands use this session",
            (Arg("username", "USERNAME"), Arg("password", "PASSWORD")), views.login),
    Command("logout", "Logout", "end this session"),
    Command("rating", "GetSellerRating", "show your feedback from buyers", (), views.rating),
    Command("register", "RegisterItemForSale",
            "list an item: name <= 32 chars, condition new|used, up to 5 keywords of <= 8 chars",
            (Arg("item_name", "NAME"), Arg("category", "CATEGORY", whole_number),
             Arg("condition", "new|used"), Arg("price", "PRICE", money),
             Arg("quantity", "QUANTITY", whole_number), Rest("keywords", "KEYWORD")),
            views.registered),
    Command("price", "ChangeItemPrice", "change an item's price",
            (Arg("item_id", "ITEM_ID", whole_number), Arg("price", "PRICE", money))),
    Command("units", "UpdateUnitsForSale", "add (+N) or remove (-N) units of stock",
            (Arg("item_id", "ITEM_ID", whole_number), Arg("quantity", "CHANGE", whole_number))),
    Command("items", "DisplayItemsForSale", "list your items", (), views.items),
]


class SellerOptions(ClientOptions):
    synopsis = "[--server ENDPOINT] [--timeout SECONDS]"
    longdesc = "Interactive seller client of the marketplace (listings, prices, stock, ratings); type 'help' at the prompt."
    default_server = "tcp:127.0.0.1:7010"


def main(argv=None) -> int:
    return run("seller", COMMANDS, SellerOptions(), argv)
