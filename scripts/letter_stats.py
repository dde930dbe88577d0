"""Write mailing/imports/letter_pairs.py: how often each letter follows another
in Russian and Ukrainian, and in Vietnamese, which the import's encoding
detection weighs a file's words by (mailing/imports/code_pages.py).

    python scripts/letter_stats.py

The text counted is what this checkout and Django already hold in those
languages: the translations (locale/ru, Django's ru and uk, locale/vi and
Django's vi) and the names, companies and cities below, which a contact
list is made of and a user interface seldom says. The output is
deterministic; run it again after changing the names (new translations
change the counts a little, which the detection does not need)."""

import re
import sys
import unicodedata
from collections import Counter
from pathlib import Path

import django
import polib

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mailing.imports.code_pages import (  # noqa: E402
    CYRILLIC_LETTERS,
    TOKEN,
    TYPOGRAPHIC,
    _vietnamese_letter,
    as_weighed,
)

# Where a translation has a placeholder, a contact list has a name: "«%(name)s»" is "«X»".
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]|%[sd]|\{\w*\}")

OUT = ROOT / "mailing" / "imports" / "letter_pairs.py"
DJANGO = Path(django.__file__).resolve().parent

NAMES = {
    "cyrillic": """
        Александр Алексей Анатолий Андрей Антон Аркадий Артём Борис Вадим Валентин Валерий Василий Виктор Виталий
        Владимир Владислав Вячеслав Геннадий Георгий Глеб Григорий Даниил Денис Дмитрий Евгений Егор Захар Иван
        Игорь Илья Кирилл Константин Лев Леонид Максим Матвей Михаил Никита Николай Олег Павел Пётр Роман Руслан
        Семён Сергей Станислав Степан Тимофей Фёдор Филипп Эдуард Юрий Ярослав Алла Алёна Алина Анастасия Анна
        Валентина Валерия Вера Вероника Виктория Галина Дарья Евгения Екатерина Елена Елизавета Жанна Зинаида Зоя
        Инна Ирина Карина Кира Ксения Лариса Лидия Любовь Людмила Маргарита Марина Мария Надежда Наталья Нина
        Оксана Ольга Полина Светлана София Софья Таисия Тамара Татьяна Ульяна Юлия Яна Иванов Смирнов Кузнецов
        Попов Васильев Петров Соколов Михайлов Новиков Фёдоров Морозов Волков Алексеев Лебедев Семёнов Егоров
        Павлов Козлов Степанов Николаев Орлов Андреев Макаров Никитин Захаров Зайцев Соловьёв Борисов Яковлев
        Григорьев Романов Воробьёв Сергеев Кузьмин Фролов Александров Дмитриев Королёв Гусев Киселёв Ильин
        Максимов Поляков Сорокин Виноградов Ковалёв Белов Медведев Антонов Тарасов Жуков Баранов Филиппов
        Комаров Давыдов Беляев Герасимов Богданов Осипов Сидоров Матвеев Титов Марков Миронов Крылов Куликов
        Карпов Власов Мельников Денисов Гаврилов Тихонов Казаков Афанасьев Данилов Савельев Тимофеев Фомин
        Чернов Абрамов Мартынов Ефимов Федотов Щербаков Назаров Калинин Исаев Чернышёв Быков Маслов Родионов
        Коновалов Лазарев Воронин Климов Филатов Пономарёв Голубев Кудрявцев Прохоров Наумов Потапов Журавлёв
        Овчинников Трофимов Леонов Соболев Ермаков Колесников Гончаров Емельянов Никифоров Грачёв Котов Гришин
        Ефремов Архипов Громов Кириллов Малышев Панов Моисеев Румянцев Акимов Кондратьев Бирюков Горбунов Анисимов
        Ерёмин Тихомиров Галкин Лукьянов Михеев Скворцов Юдин Белоусов Нестеров Симонов Прокофьев Харитонов
        Князев Цветков Левин Митрофанов Воронцов Аксёнов Софронов Мальцев Логинов Горшков Савин Краснов Майоров
        Демидов Елисеев Рыбаков Сафонов Плотников Дёмин Хохлов Шубин Иванова Смирнова Кузнецова Петрова Соколова
        Ромашка Рога Копыта Альфа Вектор Гарант Меридиан Северсталь Лукойл Газпром Сбербанк Ростелеком Транснефть
        Стройинвест Техснаб Промсервис Агрокомплекс Торговый дом Компания Общество с ограниченной ответственностью
        Индивидуальный предприниматель Закрытое акционерное общество Филиал Отдел продаж Бухгалтерия Директор
        Менеджер Главный бухгалтер Руководитель Москва Санкт-Петербург Новосибирск Екатеринбург Казань Нижний
        Новгород Челябинск Самара Омск Ростов-на-Дону Уфа Красноярск Воронеж Пермь Волгоград Краснодар Саратов
        Тюмень Тольятти Ижевск Барнаул Ульяновск Иркутск Хабаровск Ярославль Владивосток Махачкала Томск Оренбург
        Кемерово Новокузнецк Рязань Астрахань Пенза Липецк Тула Киров Чебоксары Калининград Брянск Курск Иваново
        Магнитогорск Тверь Ставрополь Белгород Сочи Архангельск Владимир Смоленск Калуга Чита Сургут Вологда
        Мурманск Якутск Грозный Кострома Петрозаводск Таганрог Сыктывкар Нальчик Шахты Дзержинск Орёл Ангарск
        Олександр Андрій Богдан Василь Віталій Володимир Дмитро Євген Іван Ігор Микола Михайло Олег Олексій
        Павло Петро Роман Сергій Тарас Юрій Ярослав Ганна Дарина Єлизавета Ірина Катерина Людмила Марія Наталія
        Оксана Олена Ольга Світлана Тетяна Юлія Шевченко Коваленко Бондаренко Ткаченко Кравченко Олійник
        Шевчук Поліщук Ковальчук Бойко Мельник Лисенко Руденко Савченко Петренко Марченко Мороз Гнатюк Ґудзь
        Київ Харків Одеса Дніпро Запоріжжя Львів Кривий Ріг Миколаїв Вінниця Херсон Полтава Чернігів Черкаси
        Житомир Суми Хмельницький Чернівці Рівне Івано-Франківськ Тернопіль Луцьк Ужгород Товариство з обмеженою
        відповідальністю Фізична особа підприємець Приватне підприємство Бухгалтер Директор Менеджер з продажу
        Мінськ Гомель Брест Гродно Магілёў Віцебск Аляксандр Уладзімір Ўладзіслаў Ім’я Мар’яна В’ячеслав
        Комп’ютер П’ятниця ООО «Ромашка» ЗАО «Вектор» АО «Газпром» ПАО «Сбербанк» ТОВ «Світанок» ООО “Альфа”
        „Мега“ Договор № 15 Офис № 3 Счёт №12 Дом № 7 Ростов–на–Дону 10 000 ₽ 5 °C ©Ромашка «Рога и копыта»
    """,
    "vietnamese": """
        Nguyễn Trần Lê Phạm Hoàng Huỳnh Phan Vũ Võ Đặng Bùi Đỗ Hồ Ngô Dương Lý Đinh Đoàn Trương Lâm Mai Trịnh
        Cao Lương Tạ Hà Văn Thị Hữu Đức Minh Anh Tuấn Hùng Dũng Quang Thanh Hương Hằng Hạnh Hoa Lan Linh Ngọc
        Thủy Thúy Trang Yến Phương Quỳnh Nhung Nga Loan Tâm Thảo Vân Xuân Hải Sơn Long Nam Bình Cường Khánh
        Hiếu Huy Khoa Phúc Thắng Toàn Trung Việt Vinh Hòa Hiền Diệp Giang Hạ Hồng Huệ Liên Mỹ Nhi Oanh Quyên
        Tuyết Uyên Ánh Ân Ấn Ẩn Ẫn Ậu Ốc Ổn Ỗi Ộc Ớt Ờ Ở Ỡ Ợ Ứng Ừng Ửa Ữa Ựa Ỳ Ỷ Ỹ Ỵ Công ty Cổ phần Trách nhiệm
        hữu hạn Thương mại Dịch vụ Xây dựng Sản xuất Đầu tư Phát triển Tập đoàn Chi nhánh Phòng kinh doanh
        Kế toán Giám đốc Trưởng phòng Nhân viên Hà Nội Thành phố Hồ Chí Minh Hải Phòng Đà Nẵng Cần Thơ Biên Hòa
        Huế Nha Trang Buôn Ma Thuột Quy Nhơn Vũng Tàu Nam Định Thái Nguyên Vinh Hạ Long Long Xuyên Mỹ Tho Rạch
        Giá Cà Mau Bắc Ninh Quận Phường Đường Số nhà Tỉnh Huyện Xã Điện thoại Địa chỉ Họ tên Công ty “Ánh Dương”
        Công ty TNHH “Hòa Phát” 100.000 ₫ Số 12 Lô A Khu phố 3 – Quận 1 Nguyễn Văn Ân Trần Thị Hương Lê Hoàng Long
    """,
}


def translations(*paths: Path) -> str:
    return "\n".join(entry.msgstr for path in paths for entry in polib.pofile(str(path)) if entry.msgstr)


def django_po(language: str) -> list[Path]:
    return sorted(DJANGO.glob(f"**/locale/{language}/LC_MESSAGES/*.po"))


def cyrillic_tokens(text: str) -> list[str]:
    """The tokens as the detection weighs them (lower case, NFC, a run of
    Latin letters as "L"), of those it would not call odd."""
    tokens = TOKEN.findall(unicodedata.normalize("NFC", PLACEHOLDER.sub("X", text)).lower())
    return [
        as_weighed(t, "cyrillic")
        for t in tokens
        if all(ch in CYRILLIC_LETTERS or ch in TYPOGRAPHIC or ch.isascii() for ch in t)
        and not t.isascii()  # an English word says nothing of Russian
    ]


def vietnamese_tokens(text: str) -> list[str]:
    tokens = TOKEN.findall(unicodedata.normalize("NFC", PLACEHOLDER.sub("X", text)).lower())
    return [t for t in tokens if all(ch.isascii() or ch in TYPOGRAPHIC or _vietnamese_letter(ch) for ch in t)]


def bigrams(tokens: list[str]) -> Counter:
    """ "^" opens a token and "$" ends it: how words start and end is evidence too."""
    counts: Counter = Counter()
    for token in tokens:
        padded = f"^{token}$"
        counts.update(padded[i : i + 2] for i in range(len(padded) - 1))
    return counts


def table(counts: Counter) -> str:
    lines, line = [], ""
    for pair, n in sorted(counts.items()):
        item = f"{pair}{n} "
        if len(line) + len(item) > 100:
            lines.append(line.rstrip())
            line = ""
        line += item
    lines.append(line.rstrip())
    return "\n".join(lines)


def main() -> None:
    ru = translations(ROOT / "locale/ru/LC_MESSAGES/django.po", *django_po("ru"), *django_po("uk"), *django_po("be"))
    vi = translations(ROOT / "locale/vi/LC_MESSAGES/django.po", *django_po("vi"))
    cyrillic = bigrams(cyrillic_tokens(ru + NAMES["cyrillic"] * 3))
    vietnamese = bigrams(vietnamese_tokens(vi + NAMES["vietnamese"] * 3))
    OUT.write_text(
        '"""Written by scripts/letter_stats.py (run it, do not edit): how many\n'
        "times each pair of letters was counted in Russian, Ukrainian and\n"
        'Belarusian text, and in Vietnamese ("^" starts a word, "$" ends it)."""\n\n'
        f'CYRILLIC = """\n{table(cyrillic)}\n"""\n\nVIETNAMESE = """\n{table(vietnamese)}\n"""\n',
        encoding="utf-8",
    )
    sys.stdout.write(f"{OUT.relative_to(ROOT)}: {len(cyrillic)} + {len(vietnamese)} pairs\n")


if __name__ == "__main__":
    main()
