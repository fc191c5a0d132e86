"""Forms shared by every area."""

from flask_wtf import FlaskForm
from wtforms import HiddenField, SelectChoice, SelectField

LANGUAGE_CHOICES = [SelectChoice("zh_CN", "简体中文"), SelectChoice("en", "English")]


class LocaleForm(FlaskForm):
    locale = SelectField(choices=LANGUAGE_CHOICES)
    next = HiddenField()
