"""The client's "Add funds" form and the small POST forms of the payment page."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, RadioField, StringField, SubmitField
from wtforms.validators import DataRequired, InputRequired, Length


class AddFundsForm(FlaskForm):
    """Step one of adding funds: a payment method and the amount to credit.

    ``paymethod`` choices are filled per request with the methods the account may use; the amount is
    checked by the view (currency precision, minimum and maximum) so the message can name the limits.
    """

    paymethod = RadioField(_l("Payment method"), coerce=int, validators=[InputRequired(_l("Choose a payment method."))],
                           validate_choice=True)
    amount = StringField(_l("Amount to add"), validators=[DataRequired(_l("Enter the amount.")), Length(max=32)],
                         render_kw={"inputmode": "decimal", "autocomplete": "off"})
    # pay this one as the first of automatic top-ups (offered where the method allows them)
    autopay = BooleanField(_l("Top up automatically later with this method"))
    # set by the confirmation page: the client saw the commission and the total and agreed
    confirm = HiddenField()
    submit = SubmitField(_l("Continue"))


class ActionForm(FlaskForm):
    """An empty form: a POST button with a CSRF token (pay again, cancel)."""
