"""Industry data: what each kind of shop looks like in a picture, its ad copy and hashtags, a Korean glossary.

Pure data plus :func:`resolve_industry`; the logic that uses it lives in :mod:`fitad.generate.prompts`
(image prompts) and :mod:`fitad.ads.copywriting` (captions). Copy templates are tuples of lines; a line
whose ``{shop}``/``{headline}``/``{offer}`` placeholder has no value is left out, so every template keeps
at least one line without placeholders. Korean lines only put batchim-neutral particles (에서, 의) after
``{shop}`` so any shop name reads correctly.
"""

from __future__ import annotations

import dataclasses
import re


class PromptError(ValueError):
    """A bad argument to prompt building (unknown industry, style, mode; impossible token budget)."""


@dataclasses.dataclass(frozen=True)
class Industry:
    """One kind of shop. Phrases are English (what the text encoder reads); hashtags are stored without '#'."""

    id: str
    name_ko: str
    name_en: str
    aliases: tuple[str, ...]
    subject: tuple[str, ...]       # what is in the picture, most important first
    lighting: tuple[str, ...]      # light and photographic style, most important first
    negative: str                  # industry-specific things to avoid
    copy_ko: tuple[tuple[str, ...], ...]
    copy_en: tuple[tuple[str, ...], ...]
    hashtags_ko: tuple[str, ...]
    hashtags_en: tuple[str, ...]


def _copy(*templates: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    return tuple(templates)


_INDUSTRY_LIST: tuple[Industry, ...] = (
    Industry(
        id="cafe", name_ko="카페", name_en="cafe",
        aliases=("커피숍", "커피전문점", "coffee shop", "coffeeshop"),
        subject=("cozy cafe interior", "coffee cup on a wooden table", "latte art", "dessert plate"),
        lighting=("warm natural window light", "soft shadows", "inviting atmosphere", "shallow depth of field"),
        negative="spilled coffee, dirty cups, messy table",
        copy_ko=_copy(
            ("☕ {headline}", "{shop}에서 여유로운 커피 한 잔 어떠세요?", "좋은 원두로 한 잔 한 잔 정성껏 내립니다.",
             "🎁 {offer}"),
            ("{headline}", "오늘 하루도 수고한 나에게 달콤한 휴식을 선물하세요.", "📍 {shop}", "✨ {offer}"),
            ("[{shop}] {headline}", "향긋한 커피와 달콤한 디저트가 기다리고 있어요.", "{offer}", "지금 들러 주세요! ☕"),
        ),
        copy_en=_copy(
            ("☕ {headline}", "Take a slow coffee break at {shop}.", "Good beans, brewed with care, cup by cup.",
             "🎁 {offer}"),
            ("{headline}", "You deserve a sweet little break today.", "📍 {shop}", "✨ {offer}"),
            ("[{shop}] {headline}", "Fragrant coffee and sweet desserts are waiting for you.", "{offer}",
             "Drop by today! ☕"),
        ),
        hashtags_ko=("카페", "카페스타그램", "커피", "커피스타그램", "디저트", "디저트카페", "카페추천", "동네카페",
                     "카페투어", "신메뉴", "커피맛집"),
        hashtags_en=("cafe", "coffee", "coffeetime", "latte", "dessert", "cafelife", "coffeelover", "localcafe"),
    ),
    Industry(
        id="restaurant", name_ko="식당", name_en="restaurant",
        aliases=("음식점", "레스토랑", "맛집", "밥집", "diner", "eatery"),
        subject=("delicious korean dish on a table", "steaming food", "restaurant table setting",
                 "fresh ingredients"),
        lighting=("warm appetizing light", "food photography", "close-up", "rich colors"),
        negative="raw meat, unappetizing, dirty dishes, flies",
        copy_ko=_copy(
            ("🍽️ {headline}", "{shop}의 정성 가득한 한 끼를 맛보세요.", "신선한 재료로 매일 정성껏 준비합니다.",
             "🎁 {offer}"),
            ("{headline}", "든든한 한 끼가 생각날 땐 여기로 오세요!", "📍 {shop}", "✨ {offer}"),
            ("[{shop}] {headline}", "가족, 친구와 함께 즐기는 따뜻한 식사 시간.", "{offer}", "방문을 기다리고 있을게요 😊"),
        ),
        copy_en=_copy(
            ("🍽️ {headline}", "Enjoy a meal made with heart at {shop}.", "Fresh ingredients, prepared with care.",
             "🎁 {offer}"),
            ("{headline}", "Craving a hearty meal? Come on in!", "📍 {shop}", "✨ {offer}"),
            ("[{shop}] {headline}", "Warm meals to share with family and friends.", "{offer}",
             "We look forward to seeing you 😊"),
        ),
        hashtags_ko=("맛집", "맛집추천", "맛스타그램", "먹스타그램", "한식", "점심메뉴", "저녁메뉴", "동네맛집", "오늘뭐먹지",
                     "존맛탱"),
        hashtags_en=("food", "foodie", "restaurant", "koreanfood", "instafood", "yummy", "delicious", "foodstagram"),
    ),
    Industry(
        id="bakery", name_ko="베이커리", name_en="bakery",
        aliases=("빵집", "제과점", "베이커리카페", "bakeshop"),
        subject=("freshly baked bread on a wooden board", "golden croissants", "bakery display shelf",
                 "flour dusted pastries"),
        lighting=("warm morning light", "soft focus background", "rustic style", "crisp texture detail"),
        negative="burnt bread, moldy, squashed pastries",
        copy_ko=_copy(
            ("🥐 {headline}", "{shop}에서 갓 구운 빵을 만나보세요.", "좋은 버터와 밀가루로 정직하게 굽습니다.", "🎁 {offer}"),
            ("{headline}", "고소한 빵 냄새에 발걸음이 멈추는 곳.", "📍 {shop}", "✨ {offer}"),
            ("[{shop}] {headline}", "매일 정성껏 구운 빵을 준비해요.", "{offer}", "인기 메뉴는 일찍 품절될 수 있어요! 🍞"),
        ),
        copy_en=_copy(
            ("🥐 {headline}", "Freshly baked bread is waiting at {shop}.", "Honest baking with good butter and flour.",
             "🎁 {offer}"),
            ("{headline}", "Follow the smell of warm bread.", "📍 {shop}", "✨ {offer}"),
            ("[{shop}] {headline}", "Bread baked with care, every day.", "{offer}", "Favourites can sell out early! 🍞"),
        ),
        hashtags_ko=("빵집", "베이커리", "빵스타그램", "빵지순례", "베이커리카페", "크루아상", "소금빵", "디저트",
                     "동네빵집", "갓구운빵"),
        hashtags_en=("bakery", "bread", "freshbread", "croissant", "pastry", "baking", "bakerylove", "breadlover"),
    ),
    Industry(
        id="beauty_salon", name_ko="미용실", name_en="hair salon",
        aliases=("헤어샵", "헤어살롱", "미장원", "hair salon", "hairsalon", "salon"),
        subject=("stylish hairstyle", "modern hair salon interior", "glossy healthy hair", "salon chair and mirror"),
        lighting=("bright soft beauty lighting", "clean background", "fashion magazine style", "high detail hair"),
        negative="frizzy hair, bald patches, messy salon",
        copy_ko=_copy(
            ("💇 {headline}", "{shop}에서 나에게 꼭 맞는 스타일을 찾아보세요.", "1:1 맞춤 상담으로 시작합니다.", "🎁 {offer}"),
            ("{headline}", "새로운 계절, 새로운 헤어로 기분 전환하세요.", "📍 {shop}", "✨ {offer}"),
            ("[{shop}] {headline}", "커트, 펌, 염색까지 손상은 줄이고 예쁘게.", "{offer}", "예약은 DM 또는 전화로 받아요 📞"),
        ),
        copy_en=_copy(
            ("💇 {headline}", "Find the style that suits you at {shop}.", "Every visit starts with a one-on-one chat.",
             "🎁 {offer}"),
            ("{headline}", "New season, new hair, new mood.", "📍 {shop}", "✨ {offer}"),
            ("[{shop}] {headline}", "Cuts, perms and colour, with less damage.", "{offer}", "Book by DM or phone 📞"),
        ),
        hashtags_ko=("미용실", "헤어샵", "헤어스타일", "미용실추천", "펌", "염색", "커트", "헤어스타그램", "레이어드컷",
                     "뿌리염색"),
        hashtags_en=("hairsalon", "hairstyle", "haircut", "haircolor", "perm", "hairstylist", "salon", "hairgoals"),
    ),
    Industry(
        id="nail_shop", name_ko="네일샵", name_en="nail salon",
        aliases=("네일", "네일아트", "네일살롱", "nail salon", "nails"),
        subject=("elegant manicured hands", "glossy gel nail art", "nail polish bottles", "nail salon table"),
        lighting=("soft diffused light", "macro close-up", "pastel background", "clean beauty style"),
        negative="chipped nails, dirty nails, extra fingers, deformed hands",
        copy_ko=_copy(
            ("💅 {headline}", "{shop}에서 손끝까지 예쁘게 꾸며보세요.", "트렌디한 디자인을 꼼꼼하게 시술해 드려요.", "🎁 {offer}"),
            ("{headline}", "이번 달 새로운 아트를 가장 먼저 만나보세요.", "📍 {shop}", "✨ {offer}"),
            ("[{shop}] {headline}", "젤네일, 케어, 페디큐어까지 한 번에.", "{offer}", "예약 문의는 DM 주세요 💌"),
        ),
        copy_en=_copy(
            ("💅 {headline}", "Pretty down to your fingertips at {shop}.", "Trendy designs, done with care.",
             "🎁 {offer}"),
            ("{headline}", "Be the first to try this month's new nail art.", "📍 {shop}", "✨ {offer}"),
            ("[{shop}] {headline}", "Gel nails, care and pedicures in one visit.", "{offer}", "DM us to book 💌"),
        ),
        hashtags_ko=("네일", "네일아트", "젤네일", "네일샵", "네일스타그램", "네일추천", "이달의아트", "패디큐어",
                     "손톱스타그램", "네일디자인"),
        hashtags_en=("nails", "nailart", "gelnails", "manicure", "naildesign", "nailsalon", "nailsofinstagram",
                     "pedicure"),
    ),
    Industry(
        id="fitness", name_ko="헬스장", name_en="fitness center",
        aliases=("헬스", "피트니스", "필라테스", "요가", "pt샵", "gym", "pilates", "yoga"),
        subject=("modern gym interior", "athletic person working out", "dumbbells and training equipment",
                 "pilates reformer studio"),
        lighting=("dramatic contrast lighting", "energetic mood", "dynamic angle", "sharp details"),
        negative="injury, bad posture, cluttered gym, extra limbs",
        copy_ko=_copy(
            ("💪 {headline}", "{shop}에서 건강한 변화를 시작하세요.", "전문 트레이너가 목표까지 함께합니다.", "🎁 {offer}"),
            ("{headline}", "오늘의 운동이 내일의 나를 만듭니다.", "📍 {shop}", "✨ {offer}"),
            ("[{shop}] {headline}", "쾌적한 공간에서 나에게 맞는 운동을 시작하세요.", "{offer}", "상담 문의는 언제든 환영해요 🏋️"),
        ),
        copy_en=_copy(
            ("💪 {headline}", "Start a healthy change at {shop}.",
             "Our trainers stay with you all the way to your goal.",
             "🎁 {offer}"),
            ("{headline}", "Today's workout builds tomorrow's you.", "📍 {shop}", "✨ {offer}"),
            ("[{shop}] {headline}", "A comfortable space to find the workout that fits you.", "{offer}",
             "Questions are always welcome 🏋️"),
        ),
        hashtags_ko=("헬스", "헬스장", "운동", "운동스타그램", "피트니스", "필라테스", "다이어트", "오운완", "pt",
                     "바디프로필"),
        hashtags_en=("fitness", "gym", "workout", "fitnessmotivation", "pilates", "health", "training", "fitlife"),
    ),
    Industry(
        id="fashion", name_ko="의류", name_en="fashion boutique",
        aliases=("옷가게", "패션", "의류매장", "편집샵", "쇼핑몰", "boutique", "clothing"),
        subject=("stylish outfit on a model", "clothing rack in a boutique", "folded clothes flat lay",
                 "fashion accessories"),
        lighting=("soft studio lighting", "editorial fashion photography", "neutral background",
                  "fabric texture detail"),
        negative="wrinkled clothes, stains, mannequin seams, distorted body",
        copy_ko=_copy(
            ("👗 {headline}", "{shop}의 새로운 시즌 아이템을 만나보세요.", "데일리로 입기 좋은 아이템을 골랐어요.", "🎁 {offer}"),
            ("{headline}", "옷장에 새로움을 더할 시간.", "📍 {shop}", "✨ {offer}"),
            ("[{shop}] {headline}", "편안함과 스타일, 둘 다 놓치지 마세요.", "{offer}", "매장에서 직접 입어 보세요 🛍️"),
        ),
        copy_en=_copy(
            ("👗 {headline}", "Discover the new season at {shop}.", "Pieces picked for everyday wear.", "🎁 {offer}"),
            ("{headline}", "Time to refresh your wardrobe.", "📍 {shop}", "✨ {offer}"),
            ("[{shop}] {headline}", "Comfort and style, no compromise.", "{offer}", "Come try them on in store 🛍️"),
        ),
        hashtags_ko=("데일리룩", "오오티디", "패션", "옷스타그램", "코디", "신상", "봄코디", "여름코디", "쇼핑",
                     "데일리코디"),
        hashtags_en=("ootd", "fashion", "style", "outfit", "newarrivals", "boutique", "streetstyle", "lookbook"),
    ),
    Industry(
        id="flower_shop", name_ko="꽃집", name_en="flower shop",
        aliases=("플라워샵", "꽃가게", "플라워", "화원", "florist", "flower shop"),
        subject=("beautiful flower bouquet", "fresh seasonal flowers", "florist workshop table", "wrapped bouquet"),
        lighting=("soft natural light", "pastel tones", "romantic mood", "delicate petal detail"),
        negative="wilted flowers, brown petals, dead leaves",
        copy_ko=_copy(
            ("💐 {headline}", "{shop}에서 마음을 전하는 꽃을 준비했어요.", "계절 꽃으로 하나하나 정성껏 만듭니다.", "🎁 {offer}"),
            ("{headline}", "소중한 날, 꽃 한 다발로 마음을 전하세요.", "📍 {shop}", "✨ {offer}"),
            ("[{shop}] {headline}", "기념일, 생일, 감사의 마음을 꽃으로 전해 보세요.", "{offer}", "주문 문의는 DM 주세요 🌷"),
        ),
        copy_en=_copy(
            ("💐 {headline}", "Flowers that speak for you, from {shop}.", "Made one by one with seasonal blooms.",
             "🎁 {offer}"),
            ("{headline}", "Say it with flowers on the days that matter.", "📍 {shop}", "✨ {offer}"),
            ("[{shop}] {headline}", "Anniversaries, birthdays, thank-yous: say it with flowers.", "{offer}",
             "DM us to order 🌷"),
        ),
        hashtags_ko=("꽃집", "꽃다발", "플라워샵", "꽃스타그램", "꽃선물", "기념일선물", "생일선물", "플라워레슨",
                     "꽃바구니", "프로포즈꽃"),
        hashtags_en=("flowers", "florist", "bouquet", "flowershop", "floraldesign", "flowergift", "blooms",
                     "flowerstagram"),
    ),
    Industry(
        id="academy", name_ko="학원", name_en="academy",
        aliases=("교습소", "공부방", "과외", "어학원", "learning center", "tutoring"),
        subject=("bright modern classroom", "students studying at desks", "books and stationery on a desk",
                 "whiteboard lesson"),
        lighting=("bright clean lighting", "friendly atmosphere", "organized composition", "crisp focus"),
        negative="messy desk, bored faces, dark room",
        copy_ko=_copy(
            ("📚 {headline}", "{shop}에서 실력을 키워 보세요.", "학생 한 명 한 명에게 맞춘 수업을 준비합니다.", "🎁 {offer}"),
            ("{headline}", "꾸준함이 실력이 되는 곳.", "📍 {shop}", "✨ {offer}"),
            ("[{shop}] {headline}", "체계적인 커리큘럼으로 기초부터 탄탄하게.", "{offer}", "상담 문의 환영합니다 ✏️"),
        ),
        copy_en=_copy(
            ("📚 {headline}", "Build real skills at {shop}.", "Lessons shaped around every single student.",
             "🎁 {offer}"),
            ("{headline}", "Where steady effort turns into skill.", "📍 {shop}", "✨ {offer}"),
            ("[{shop}] {headline}", "A structured curriculum, strong from the basics up.", "{offer}",
             "Consultations welcome ✏️"),
        ),
        hashtags_ko=("학원", "학원추천", "공부", "공부스타그램", "영어학원", "수학학원", "교습소", "신학기", "내신대비",
                     "방학특강"),
        hashtags_en=("academy", "education", "study", "tutoring", "learning", "students", "studygram", "classroom"),
    ),
    Industry(
        id="pet_shop", name_ko="펫샵", name_en="pet shop",
        aliases=("애견샵", "반려동물", "애견용품", "펫용품", "애견미용", "pet shop", "petshop"),
        subject=("cute happy puppy", "playful cat", "pet toys and treats", "cozy pet bed"),
        lighting=("soft warm light", "cheerful mood", "eye-level shot", "fluffy fur detail"),
        negative="sad animal, dirty fur, cage, extra legs",
        copy_ko=_copy(
            ("🐶 {headline}", "{shop}에서 우리 아이에게 필요한 것을 만나보세요.", "반려동물의 건강과 행복을 먼저 생각합니다.",
             "🎁 {offer}"),
            ("{headline}", "사랑스러운 가족을 위한 특별한 선물.", "📍 {shop}", "✨ {offer}"),
            ("[{shop}] {headline}", "사료, 간식, 장난감까지 꼼꼼하게 골랐어요.", "{offer}", "반려인 여러분 언제든 놀러 오세요 🐾"),
        ),
        copy_en=_copy(
            ("🐶 {headline}", "Everything your best friend needs, at {shop}.",
             "Your pet's health and happiness come first.",
             "🎁 {offer}"),
            ("{headline}", "A special treat for a lovable family member.", "📍 {shop}", "✨ {offer}"),
            ("[{shop}] {headline}", "Food, treats and toys, carefully chosen.", "{offer}",
             "Pet lovers, drop by anytime 🐾"),
        ),
        hashtags_ko=("펫샵", "반려동물", "강아지", "고양이", "댕댕이", "멍스타그램", "냥스타그램", "반려견", "애견용품",
                     "강아지간식"),
        hashtags_en=("petshop", "pets", "dog", "cat", "puppy", "dogsofinstagram", "catsofinstagram", "petlover"),
    ),
    Industry(
        id="real_estate", name_ko="부동산", name_en="real estate agency",
        aliases=("공인중개사", "공인중개사사무소", "중개사무소", "realty", "real estate", "realtor"),
        subject=("bright modern apartment interior", "spacious living room", "building exterior",
                 "keys on a table"),
        lighting=("bright daylight", "wide angle interior photography", "clean lines", "welcoming mood"),
        negative="cluttered room, cracks, mold, dark interior, distorted perspective",
        copy_ko=_copy(
            ("🏠 {headline}", "{shop}에서 새로운 보금자리를 찾아 드립니다.", "꼼꼼한 상담으로 꼭 맞는 집을 찾아 드려요.",
             "📢 {offer}"),
            ("{headline}", "좋은 집은 좋은 상담에서 시작됩니다.", "📍 {shop}", "📢 {offer}"),
            ("[{shop}] {headline}", "아파트, 원룸, 상가까지 매물 상담 환영합니다.", "{offer}",
             "방문 전에 전화 주시면 더 자세히 안내해 드려요 📞"),
        ),
        copy_en=_copy(
            ("🏠 {headline}", "Find your next home with {shop}.", "Careful consultations to find the right place.",
             "📢 {offer}"),
            ("{headline}", "A good home starts with good advice.", "📍 {shop}", "📢 {offer}"),
            ("[{shop}] {headline}", "Apartments, studios and shops: ask us about listings.", "{offer}",
             "Call ahead and we will prepare the details 📞"),
        ),
        hashtags_ko=("부동산", "공인중개사", "아파트", "원룸", "전세", "월세", "매물", "이사", "신혼집", "내집마련"),
        hashtags_en=("realestate", "home", "apartment", "househunting", "realtor", "newhome", "property", "forrent"),
    ),
    Industry(
        id="clinic", name_ko="병원", name_en="clinic",
        aliases=("의원", "클리닉", "치과", "한의원", "피부과", "정형외과", "hospital", "dental clinic", "dentist"),
        subject=("clean modern clinic interior", "friendly medical staff", "bright reception desk",
                 "calm waiting room"),
        lighting=("bright clean lighting", "trustworthy atmosphere", "white and soft blue tones", "professional look"),
        negative="blood, needles, injury, scary, dirty, gore",
        copy_ko=_copy(
            ("🏥 {headline}", "{shop}에서 건강을 꼼꼼히 살펴 드립니다.", "편안한 분위기에서 친절하게 진료합니다.", "📢 {offer}"),
            ("{headline}", "건강한 일상, 가까운 곳에서 지켜 드릴게요.", "📍 {shop}", "📢 {offer}"),
            ("[{shop}] {headline}", "진료 시간과 예약은 전화로 확인해 주세요.", "{offer}", "여러분의 건강한 하루를 응원합니다 😊"),
        ),
        copy_en=_copy(
            ("🏥 {headline}", "Careful, attentive care at {shop}.", "Friendly treatment in a calm setting.",
             "📢 {offer}"),
            ("{headline}", "Looking after your everyday health, close to home.", "📍 {shop}", "📢 {offer}"),
            ("[{shop}] {headline}", "Please call to check opening hours and appointments.", "{offer}",
             "Wishing you a healthy day 😊"),
        ),
        hashtags_ko=("병원", "동네병원", "건강", "건강관리", "진료", "치과", "한의원", "피부과", "건강검진", "예방접종"),
        hashtags_en=("clinic", "health", "healthcare", "wellness", "doctor", "dentist", "medical", "selfcare"),
    ),
)

INDUSTRIES: dict[str, Industry] = {ind.id: ind for ind in _INDUSTRY_LIST}


def _key(name: str) -> str:
    """Lookup key: case, spaces, '-' and '_' do not matter ('Beauty Salon' == 'beauty_salon')."""
    return re.sub(r"[\s_\-]+", "", name).casefold()


def _build_index() -> dict[str, str]:
    index: dict[str, str] = {}
    for ind in _INDUSTRY_LIST:
        for name in (ind.id, ind.name_ko, ind.name_en, *ind.aliases):
            key = _key(name)
            # An alias shared by two industries would make lookups depend on list order.
            if index.get(key, ind.id) != ind.id:
                raise AssertionError(f"industry name {name!r} is used by both {index[key]!r} and {ind.id!r}")
            index[key] = ind.id
    return index


_INDEX = _build_index()


def resolve_industry(name: str) -> Industry:
    """The industry for an id, Korean name or alias (case-, space-, '-'/'_'-insensitive)."""
    if not isinstance(name, str):
        raise PromptError(f"industry must be a string, got {type(name).__name__}")
    found = _INDEX.get(_key(name))
    if found is None:
        raise PromptError(f"industry {name!r} is not known; valid ids: {', '.join(INDUSTRIES)} "
                          "(Korean names and aliases such as '카페' or '헤어샵' work too)")
    return INDUSTRIES[found]


# Composition per output format (the keys match the ad formats: square feed post, 4:5 portrait, 9:16 story...).
STYLE_PRESETS: dict[str, str] = {
    "instagram_square": "square composition, centered subject, balanced framing",
    "instagram_portrait": "portrait composition, subject in the upper two thirds, clean lower area",
    "instagram_story": "vertical composition, centered subject, clean top and bottom",
    "facebook_link": "wide landscape composition, subject off-center, clean space on one side",
    "kakao_square": "square composition, simple clean background, bold centered subject",
    "kakao_banner": "wide banner composition, subject on the right, empty space on the left",
    "custom": "balanced composition",
}

# Korean -> English for words shop owners use in requests. Keys are stems (particles are stripped before
# lookup); a few adjective stems (따뜻, 깔끔 ...) are listed so inflected forms (따뜻하고) still match.
GLOSSARY: dict[str, str] = {
    # coffee and drinks
    "커피": "coffee", "아메리카노": "americano", "아이스": "iced", "라떼": "latte", "카페라떼": "cafe latte",
    "카푸치노": "cappuccino", "에스프레소": "espresso", "모카": "mocha", "바닐라": "vanilla",
    "콜드브루": "cold brew", "녹차": "green tea", "말차": "matcha", "홍차": "black tea", "밀크티": "milk tea",
    "스무디": "smoothie", "주스": "juice", "에이드": "ade", "음료": "drink", "원두": "coffee beans",
    "우유": "milk", "크림": "cream", "생크림": "whipped cream", "치즈": "cheese",
    # fruit and flavours
    "딸기": "strawberry", "바나나": "banana", "망고": "mango", "복숭아": "peach", "블루베리": "blueberry",
    "사과": "apple", "포도": "grape", "수박": "watermelon", "레몬": "lemon", "자몽": "grapefruit",
    "초콜릿": "chocolate", "초콜렛": "chocolate", "초코": "chocolate", "밤라떼": "chestnut latte",
    "고구마": "sweet potato", "흑임자": "black sesame", "꿀": "honey",
    # desserts and bakery
    "디저트": "dessert", "케이크": "cake", "조각케이크": "slice of cake", "마카롱": "macaron", "쿠키": "cookie",
    "와플": "waffle", "티라미수": "tiramisu", "타르트": "tart", "빙수": "bingsu shaved ice",
    "팥빙수": "red bean bingsu", "브런치": "brunch", "빵": "bread", "빵집": "bakery", "베이커리": "bakery",
    "크루아상": "croissant", "크로와상": "croissant", "식빵": "bread loaf", "바게트": "baguette",
    "베이글": "bagel", "도넛": "donut", "도너츠": "donut", "머핀": "muffin", "스콘": "scone",
    "소금빵": "salt butter roll", "단팥빵": "red bean bun", "카스텔라": "castella sponge cake",
    "샌드위치": "sandwich",
    # food
    "파스타": "pasta", "피자": "pizza", "치킨": "fried chicken", "삼겹살": "grilled pork belly",
    "김치찌개": "kimchi stew", "된장찌개": "soybean paste stew", "비빔밥": "bibimbap", "떡볶이": "tteokbokki",
    "김밥": "gimbap", "라면": "ramen", "국밥": "rice soup", "냉면": "cold noodles", "불고기": "bulgogi",
    "갈비": "galbi short ribs", "스테이크": "steak", "샐러드": "salad", "햄버거": "hamburger", "버거": "burger",
    "초밥": "sushi", "돈가스": "pork cutlet", "돈까스": "pork cutlet", "만두": "dumplings", "족발": "jokbal pork",
    "한식": "korean food", "양식": "western food", "중식": "chinese food", "일식": "japanese food",
    "점심": "lunch", "저녁": "dinner", "메뉴": "menu", "신메뉴": "new menu", "맛집": "popular restaurant",
    "도시락": "lunch box", "배달": "delivery", "포장": "takeout",
    # hair, nails, skin
    "헤어": "hair", "머리": "hair", "커트": "haircut", "컷": "haircut", "펌": "perm", "파마": "perm",
    "염색": "hair dye", "탈색": "bleached hair", "두피": "scalp", "단발": "short bob hair",
    "긴머리": "long hair", "미용": "beauty care", "미용실": "hair salon", "네일": "nail", "젤네일": "gel nails",
    "네일아트": "nail art", "페디큐어": "pedicure", "패디큐어": "pedicure", "손톱": "fingernails",
    "속눈썹": "eyelashes", "메이크업": "makeup", "피부": "skin", "미백": "skin brightening",
    "보습": "moisturizing", "피부관리": "skincare", "화장품": "cosmetics", "향수": "perfume",
    # fitness
    "헬스": "gym workout", "헬스장": "gym", "운동": "workout", "요가": "yoga", "필라테스": "pilates",
    "다이어트": "diet", "트레이너": "trainer", "근육": "muscle", "스트레칭": "stretching", "수영": "swimming",
    # fashion
    "원피스": "dress", "셔츠": "shirt", "티셔츠": "t-shirt", "바지": "pants", "청바지": "jeans",
    "치마": "skirt", "스커트": "skirt", "코트": "coat", "자켓": "jacket", "재킷": "jacket",
    "니트": "knit sweater", "가디건": "cardigan", "신발": "shoes", "운동화": "sneakers", "가방": "bag",
    "모자": "hat", "액세서리": "accessories", "신상": "new arrivals", "옷": "clothes", "패션": "fashion",
    "코디": "outfit",
    # flowers and plants
    "꽃": "flowers", "꽃집": "flower shop", "꽃다발": "bouquet", "꽃바구니": "flower basket", "장미": "rose",
    "튤립": "tulip", "해바라기": "sunflower", "카네이션": "carnation", "안개꽃": "baby's breath",
    "화분": "potted plant", "식물": "plant", "벚꽃": "cherry blossom",
    # academy
    "영어": "english", "수학": "math", "국어": "korean language", "과학": "science", "코딩": "coding",
    "피아노": "piano", "미술": "art", "학생": "student", "공부": "study", "수업": "class", "학원": "academy",
    "교실": "classroom", "책": "books",
    # pets
    "강아지": "puppy", "고양이": "cat", "반려동물": "pet", "애견": "dog", "반려견": "dog", "사료": "pet food",
    "간식": "snack", "펫": "pet",
    # real estate
    "아파트": "apartment", "원룸": "studio apartment", "오피스텔": "officetel studio", "빌라": "villa",
    "상가": "retail space", "매물": "property listing", "전세": "jeonse lease", "월세": "monthly rent",
    "집": "house", "부동산": "real estate", "인테리어": "interior", "거실": "living room",
    # clinic
    "병원": "clinic", "치과": "dental clinic", "한의원": "korean medicine clinic", "클리닉": "clinic",
    "의사": "doctor", "간호사": "nurse", "진료": "medical care", "건강": "health", "검진": "health checkup",
    "치아": "teeth", "미소": "smile",
    # promotions
    "할인": "discount", "세일": "sale", "오픈": "grand opening", "그랜드오픈": "grand opening", "신규": "new",
    "이벤트": "event", "행사": "event", "특가": "special price", "무료": "free", "증정": "free gift",
    "선물": "gift", "쿠폰": "coupon", "기념": "celebration", "출시": "launch", "한정": "limited edition",
    "인기": "popular", "추천": "recommended", "리뉴얼": "renewal", "예약": "reservation", "신제품": "new product",
    # seasons and time
    "봄": "spring", "여름": "summer", "가을": "autumn", "겨울": "winter", "크리스마스": "christmas",
    "연말": "year-end", "새해": "new year", "설날": "lunar new year", "추석": "chuseok harvest festival",
    "발렌타인": "valentine's day", "화이트데이": "white day", "어버이날": "parents' day", "아침": "morning",
    "주말": "weekend", "오늘": "today",
    # mood and adjectives
    "따뜻한": "warm", "따뜻": "warm", "시원한": "cool refreshing", "시원": "cool", "차가운": "cold",
    "달콤한": "sweet", "달콤": "sweet", "고급스러운": "luxurious", "고급": "premium", "귀여운": "cute",
    "깔끔한": "clean", "깔끔": "clean", "밝은": "bright", "아늑한": "cozy", "아늑": "cozy", "예쁜": "pretty",
    "화사한": "vibrant", "상큼한": "fresh and zesty", "신선한": "fresh", "건강한": "healthy",
    "맛있는": "delicious", "부드러운": "soft", "심플한": "simple", "모던한": "modern", "모던": "modern",
    "빈티지": "vintage", "감성": "aesthetic mood", "자연스러운": "natural", "세련된": "sophisticated",
    "러블리": "lovely", "사랑스러운": "lovely", "미니멀": "minimal", "파스텔": "pastel", "새로운": "new",
    # colours
    "빨간": "red", "빨간색": "red", "파란": "blue", "파란색": "blue", "노란": "yellow", "노란색": "yellow",
    "초록": "green", "초록색": "green", "분홍": "pink", "분홍색": "pink", "핑크": "pink", "하얀": "white",
    "흰색": "white", "검은": "black", "검정": "black", "골드": "gold", "베이지": "beige",
    # places and people
    "카페": "cafe", "식당": "restaurant", "레스토랑": "restaurant", "매장": "store", "가게": "shop",
    "테이블": "table", "창가": "window side", "야외": "outdoor", "테라스": "terrace", "바다": "sea",
    "공원": "park", "여자": "woman", "남자": "man", "아이": "child", "가족": "family", "커플": "couple",
    "모델": "model", "사람": "person", "손님": "customer", "배경": "background", "사진": "photo",
    "분위기": "atmosphere", "느낌": "vibe", "스타일": "style", "컨셉": "concept", "포스터": "poster",
    "광고": "advertisement", "홍보": "promotion",
}

# Particles and endings stripped from the end of a word before glossary lookup, longest tried first.
KOREAN_ENDINGS: tuple[str, ...] = tuple(sorted({
    "은", "는", "이", "가", "을", "를", "의", "에", "에서", "에게", "와", "과", "도", "으로", "로", "만",
    "까지", "부터", "처럼", "보다", "들", "하는", "한", "하게", "하고", "해요", "합니다", "입니다", "이에요",
    "예요", "이다", "다", "된", "되는", "스러운", "있는", "이랑", "랑", "요",
}, key=lambda s: (-len(s), s)))
