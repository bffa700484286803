"""
``market-buyer``: the interactive buyer client.

    market-buyer --server tcp:127.0.0.1:7011
"""

from marketplace.market.cli import views
from marketplace.market.cli.shell import (
    Arg,
    ClientOptions,
    Command,
    Opt,
    Rest,
    run,
    thumbs,
    whole_number,
    yes_no,
)

COMMANDS = [
    Command("create-account", "CreateAccount", "create a buyer account",
            (Arg("username", "USERNAME"), Arg("password", "PASSWORD"))),
    Command("login", "Login", "log in; later commands use this session",
            (Arg("username", "USERNAME"), Arg("password", "PASSWORD")), views.login),
    Command("logout", "Logout", "end this session"),
    Command("search", "SearchItemsForSale",
            "find items by category and up to 5 keywords, best match first",
            (Opt("category", whole_number), Opt("offset", whole_number), Opt("limit", whole_number),
             Opt("include_out_of_stock", yes_no), Rest("keywords", "KEYWORD")), views.items),
    Command("item", "GetItem", "show one item", (Arg("item_id", "ITEM_ID", whole_number),), views.item),
    Command("add", "AddItemToCart", "add units of an item to the cart",
            (Arg("item_id", "ITEM_ID", whole_number), Arg("quantity", "QUANTITY", whole_number))),
    Command("remove", "RemoveItemFromCart", "take units of an item out of the cart",
            (Arg("item_id", "ITEM_ID", whole_number), Arg("quantity", "QUANTITY", whole_number))),
    Command("cart", "DisplayCart", "show the cart", (), views.cart),
    Command("save-cart", "SaveCart", "keep the cart for later sessions", (), views.cart),
    Command("clear-cart", "ClearCart", "empty the cart"),
    Command("purchase", "MakePurchase", "buy everything in the cart (quote a name with spaces)",
            (Arg("name", "NAME"), Arg("card_number", "CARD_NUMBER"),
             Arg("expiration_date", "MM/YY"), Arg("security_code", "CVV")),
            views.purchase, idempotency_field="idempotency_key"),
    Command("purchases", "GetBuyerPurchases", "list what you bought, newest first", (), views.purchases),
    Command("feedback", "ProvideFeedback", "rate an item you bought",
            (Arg("item_id", "ITEM_ID", whole_number), Arg("thumbs_up", "up|down", thumbs))),
    Command("seller-rating", "GetSellerRating", "show a seller's feedback",
            (Arg("seller_id", "SELLER_ID", whole_number),), views.rating),
]


class BuyerOptions(ClientOptions):
    synopsis = "[--server ENDPOINT] [--timeout SECONDS]"
    longdesc = "Interactive buyer client of the marketplace (search, carts, purchases, feedback); type 'help' at the prompt."
    default_server = "tcp:127.0.0.1:7011"


def main(argv=None) -> int:
    return run("buyer", COMMANDS, BuyerOptions(), argv)
